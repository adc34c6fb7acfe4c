"""The exception tree of credit-ledger.

    LedgerError                 anything the CLI reports as one line, exit 1
    ├── ConfigError             a setting, config file or environment value is wrong
    ├── RateCardError           a rate-card file cannot be used
    ├── DatabaseError           the ledger database cannot be reached or upgraded
    ├── DeliveryError           an alert channel did not take a message
    └── ReportError             a report or a close cannot be made as asked (a missing folder, a closed period)
        └── GapError            a close refused: the period's reconciliation has an unexplained gap

A money mismatch (a pricing finding, a reconciliation gap) is not an
exception: it is a value that is returned and stored.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """An error with a message a user can act on."""


class ConfigError(LedgerError):
    pass


class RateCardError(LedgerError):
    pass


class DatabaseError(LedgerError):
    pass


class DeliveryError(LedgerError):
    pass


class ReportError(LedgerError):
    pass


class GapError(ReportError):
    pass


def describe(error: BaseException) -> str:
    """One line on what went wrong: a driver's own message where the error wraps one (SQLAlchemy's `orig`)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def shown(value: Any) -> str:
    """A value as a message shows it: escaped (a NUL or newline is seen, not obeyed) and at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
