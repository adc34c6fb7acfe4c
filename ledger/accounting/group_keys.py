"""The keys a spend report is grouped by (`--by`, a `[[reports]]` entry's `by`): values, checked (no I/O).

The store sums by them in SQL and the reports label their rows with them;
the config checks a scheduled report's keys with the same parser when it is
read, which is why they live below all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import shown

PLAIN_KEYS = ("project", "user", "key", "model", "account", "day", "week", "month")
TIME_KEYS = frozenset({"day", "week", "month"})
MAX_GROUP_KEYS = 6
# A tag name as the recorder takes it (X-Ledger-Tags k=v): kept to what needs no quoting in a JSON path.
_TAG_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,100}", re.ASCII)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """One `--by` key: a plain key, or `tag:NAME` (the value of one tag)."""

    name: str
    tag: str | None = None

    @property
    def label(self) -> str:
        return f"tag:{self.tag}" if self.tag is not None else self.name

    @property
    def is_time(self) -> bool:
        return self.name in TIME_KEYS


def parse_group_keys(text: str | list | tuple | None) -> tuple[GroupKey, ...]:
    """`project,user,tag:feature` (or a list of those) -> keys; ValueError naming the bad one."""
    if text is None:
        return ()
    if not isinstance(text, (str, list, tuple)) or not all(isinstance(part, str) for part in text):
        raise ValueError(f"must be group keys such as \"project,user\" or [\"project\", \"user\"], got {shown(text)}")
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)] if text else []
    keys: list[GroupKey] = []
    for part in parts:
        if not isinstance(part, str) or not part:
            raise ValueError(f"empty group key in {text!r}")
        if part.startswith("tag:"):
            name = part[4:]
            if not _TAG_NAME.fullmatch(name):
                raise ValueError(f"not a tag name: {name!r} (letters, digits and _ . : / -)")
            key = GroupKey("tag", name)
        elif part in PLAIN_KEYS:
            key = GroupKey(part)
        else:
            raise ValueError(f"unknown group key {part!r} (one of {', '.join(PLAIN_KEYS)} or tag:NAME)")
        if key in keys:
            raise ValueError(f"group key {part!r} given twice")
        keys.append(key)
    if len(keys) > MAX_GROUP_KEYS:
        raise ValueError(f"at most {MAX_GROUP_KEYS} group keys, got {len(keys)}")
    return tuple(keys)
