"""The accessibility check: axe-core (vendored, served by the dashboard itself at /static/vendor/axe.min.js, which its
CSP's script-src 'self' allows) run in the page; a serious or critical violation fails the test.

    assert_accessible(page)     after the page has loaded; `exclude` takes CSS selectors axe should skip
"""

from __future__ import annotations

from urllib.parse import urlsplit

FAILING = ("serious", "critical")

_RUN = """async (exclude) => {
  const results = await axe.run({include: [document], exclude: exclude.map((s) => [s])},
                                {resultTypes: ['violations']});
  return results.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                         targets: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}));
}"""


def violations(page, exclude: tuple[str, ...] = ()) -> list[dict]:
    """axe's violations on the page as it is now: [{id, impact, help, targets}]."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
        page.add_script_tag(url=f"{origin}/static/vendor/axe.min.js")
    return page.evaluate(_RUN, list(exclude))


def assert_accessible(page, exclude: tuple[str, ...] = ()) -> None:
    found = [v for v in violations(page, exclude) if v["impact"] in FAILING]
    assert not found, f"{page.url}: " + "; ".join(f"{v['impact']} {v['id']} ({v['help']}) at {v['targets']}"
                                                  for v in found)
