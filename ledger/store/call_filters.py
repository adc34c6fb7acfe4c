"""Which calls a listing shows: the filters of `credit-ledger calls` and of the dashboard's Calls pages, as SQL.

A filter's text is what the reports show for a group (`reports.cells.group_label`), so a group's label
opens its calls: `(none)` is a call without one, `(empty)` one with "", a label in double quotes is the
JSON-escaped text (`"(none)"` is a project named so); any other text is itself. A key is named by its
label or by `…` and its last four characters (`…Zq9x`, or `...Zq9x`), as the spend report names it: the
ledger holds only a key's fingerprint, never the key. A model matches the model requested or the one
reported. A tag is `name=value`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import and_, or_

from .models import ApiKey, Call
from .spend import tag_value

NO_VALUE, EMPTY = "(none)", "(empty)"
LAST_FOUR = ("…", "...")  # a key named by its last four characters


@dataclass(frozen=True, slots=True)
class CallFilter:
    """The filters of a listing, each as the user wrote it (None: no filter)."""

    project: str | None = None
    user: str | None = None
    key: str | None = None
    model: str | None = None
    status: str | None = None
    pricing_class: str | None = None
    tag: str | None = None  # name=value

    def __post_init__(self) -> None:
        # A filter that names nothing is refused when it is made (a ValueError saying why).
        for label in (self.project, self.user, self.model):
            if label is not None:
                value_of(label)
        if self.key is not None:
            key_of(self.key)
        if self.tag is not None:
            tag_of(self.tag)

    @property
    def needs_keys(self) -> bool:
        """Whether the filter reads a key's label (the listing joins the keys)."""
        return self.key is not None and key_of(self.key)[0] == "label"


def value_of(label: str) -> str | None:
    """The caller's text a group label stands for (None: a call without one)."""
    if label == NO_VALUE:
        return None
    if label == EMPTY:
        return ""
    if label[:1] == '"':
        try:
            text = json.loads(label)
        except ValueError:
            raise ValueError(f"{label!r} opens a double quote it does not close as JSON text") from None
        if isinstance(text, str):
            return text
    return label


def tag_of(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise ValueError(f"a tag is name=value, got {text!r}")
    return name, value


def key_of(text: str) -> tuple[str, str | None]:
    """("last4", XXXX) for `…XXXX`, ("label", LABEL) otherwise, ("none", None) for `(none)`."""
    if text == NO_VALUE:
        return "none", None
    for mark in LAST_FOUR:
        if text.startswith(mark) and len(text) == len(mark) + 4:
            return "last4", text[len(mark):]
    return "label", value_of(text)


def _equals(column, label: str):
    value = value_of(label)
    return column.is_(None) if value is None else column == value


def conditions(filters: CallFilter | None, dialect: str) -> list:
    """The WHERE conditions of `filters` on `calls` (and `api_keys`, joined when `filters.needs_keys`)."""
    if filters is None:
        return []
    found = []
    if filters.project is not None:
        found.append(_equals(Call.project, filters.project))
    if filters.user is not None:
        found.append(_equals(Call.end_user, filters.user))
    if filters.key is not None:
        kind, value = key_of(filters.key)
        if kind == "none":
            found.append(Call.key_fingerprint.is_(None))
        elif kind == "last4":
            found.append(Call.key_last4 == value)
        else:
            found.append(ApiKey.label == value)
    if filters.model is not None:
        model = value_of(filters.model)
        found.append(and_(Call.model_requested.is_(None), Call.model_reported.is_(None)) if model is None
                     else or_(Call.model_requested == model, Call.model_reported == model))
    if filters.status is not None:
        found.append(Call.status == filters.status)
    if filters.pricing_class is not None:
        found.append(Call.pricing_class == filters.pricing_class)
    if filters.tag is not None:
        name, value = tag_of(filters.tag)
        found.append(tag_value(name, dialect) == value)
    return found
