"""Who is asking: a Viewer, its role and the projects it may see, and the ViewerSource that finds it for a request.

Roles: `admin` (users, tokens, the audit log, and reads everything), `finance`
(reads everything, exports, closes and reopens periods), `viewer` (reads
everything and exports). Any of them may be limited to named projects: then
every page, chart, drill-down, export and API route shows only those
projects' calls and spend, and the queries themselves are limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ADMIN, FINANCE, VIEWER = "admin", "finance", "viewer"
ROLES = (ADMIN, FINANCE, VIEWER)

# What each role may do besides reading.
READ, EXPORT, CLOSE, ADMINISTER = "read", "export", "close", "administer"
_ALLOWED = {
    ADMIN: frozenset({READ, EXPORT, ADMINISTER}),
    FINANCE: frozenset({READ, EXPORT, CLOSE}),
    VIEWER: frozenset({READ, EXPORT}),
}


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in user or a bearer token, as a request's pages and queries see it."""

    name: str
    role: str
    projects: frozenset[str] | None = None  # None: every project; else only these (and never calls of no project)
    csrf: str = ""  # the session's CSRF token, which every form posts back; "" for a bearer token (no forms)
    via: str = "session"  # "session" or "token"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}: one of {', '.join(ROLES)}")

    @property
    def limited(self) -> bool:
        return self.projects is not None

    def may(self, action: str) -> bool:
        if action == CLOSE and self.limited:
            return False  # a close fixes every project's figures: not for a viewer of some of them
        if action == ADMINISTER and self.limited:
            return False
        return action in _ALLOWED[self.role]

    def sees_project(self, project: str | None) -> bool:
        return self.projects is None or (project is not None and project in self.projects)


class ViewerSource(Protocol):
    """Finds the viewer of a request (a session cookie, a bearer token), or None: the request is not signed in."""

    def viewer_of(self, request) -> Viewer | None: ...
