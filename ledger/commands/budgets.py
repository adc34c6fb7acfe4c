"""`budgets`: each budget's spend, limit and projection and each balance's runway; with `send`, delivered as the
service would."""

from __future__ import annotations

from typing import TextIO

from ..config import Settings
from ..reports.budgets import budgets_json, format_budgets, format_fired
from ..service.alerting import evaluate, notify
from ..service.channels import close_all, senders_for
from ..service.delivery import utc_now
from ..service.runtime import host_name
from ..store.engine import Ledger
from . import EXIT_OK


def budgets(settings: Settings, out: TextIO, *, as_json: bool = False, send: bool = False) -> int:
    """Each budget's and balance alert's state; with `send`, evaluate and deliver what is due, as the service does."""
    if send:
        senders = senders_for(settings.channels)  # an unset secret stops here: nothing written, nothing sent
        try:
            with Ledger(settings.database_url) as ledger:
                evaluation, report = notify(ledger, settings, host=host_name(), senders=senders)
        finally:
            close_all(senders)
    else:
        with Ledger(settings.database_url, must_exist=True) as ledger:
            evaluation = evaluate(ledger, settings, now=utc_now(), host=host_name(), write=False)
    if as_json:
        out.write(budgets_json(evaluation.at, evaluation.budgets, evaluation.balances))
    else:
        out.write(format_budgets(evaluation.budgets, evaluation.balances))
    if send and not as_json:
        out.write("\n" + format_fired(evaluation.raised, evaluation.resolved, report.sent))
    return EXIT_OK
