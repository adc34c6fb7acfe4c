"""Pages from Jinja2 templates: autoescaped (text from callers is shown, never run), in the page's frame.

The frame prints the zone the page's times are in and the moment its
figures are "as of", and the navigation the viewer's role may use.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from .viewer import ADMINISTER, Viewer

NAVIGATION = (
    # (path, label, action needed)
    ("/", "Overview", None),
    ("/spend", "Spend", None),
    ("/calls", "Calls", None),
    ("/pricing", "Pricing check", None),
    ("/reconciliation", "Reconciliation", None),
    ("/budgets", "Budgets and alerts", None),
    ("/closes", "Closes", None),
    ("/rate-cards", "Rate cards", None),
    ("/admin", "Admin", ADMINISTER),
)

_ENVIRONMENT = Environment(
    loader=PackageLoader("ledger.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a name a template misses is an error in the tests, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)


def local_time(moment: datetime | None, zone: str, seconds: bool = False) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


_ENVIRONMENT.filters["local_time"] = local_time


def navigation(viewer: Viewer | None) -> list[tuple[str, str]]:
    if viewer is None:
        return []
    return [(path, label) for path, label, action in NAVIGATION if action is None or viewer.may(action)]


def render(request, template: str, *, status: int = 200, zone: str | None = None, as_of: datetime | None = None,
           **context) -> HTMLResponse:
    """The template rendered in the frame; `zone` and `as_of` default to the config's zone and now."""
    viewer = getattr(request.state, "viewer", None)
    settings = request.app.state.settings
    frame = {
        "request": request,
        "viewer": viewer,
        "navigation": navigation(viewer),
        "path": request.url.path,
        "zone": zone or settings.timezone,
        "as_of": as_of or datetime.now(timezone.utc),
        "csrf": viewer.csrf if viewer is not None else "",
    }
    html = _ENVIRONMENT.get_template(template).render(**frame, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# No script but the dashboard's own files, no frames, no guessing of types: a script from data would not run
# even if a template forgot to escape it.
# style-src-attr 'unsafe-inline': ECharts' tooltip sets its content with innerHTML whose elements carry style="..."
# attributes (its SVG drawing and its boxes use the CSSOM, el.style.cssText, which style-src allows anyway), and
# Chromium refuses those under style-src 'self' ("Applying inline style violates ... style-src"). Only style
# attributes are relaxed: <style> elements and style sheets stay 'self' (style-src-elem falls back to style-src),
# scripts are untouched, and templates write no style attribute (Jinja escapes text from callers into one).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "style-src-attr 'unsafe-inline'; img-src 'self' data:; "
                                "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
