"""The dashboard: server-rendered pages, the read API under /api/v1/, sign-in and sessions.

    app.py        create_app(settings, viewers): the Starlette app, its gate and its error pages
    viewer.py     who is asking: a Viewer (role, the projects it may see) and the ViewerSource that finds one
    params.py     query parameters read and checked, each failure a BadQuery naming the parameter
    rendering.py  the Jinja2 templates (autoescaped), the page's frame: zone, "as of", navigation
    spend.py      the Spend page: a period's report by up to two keys, its daily chart, links to the calls behind
    spend_export.py  the Spend view's exports and /api/v1/spend: the CLI's own report output
    sessions.py   SignedInViewers: the ViewerSource of sessions (cookie) and bearer tokens (/api/), the cookie's flags
    signin.py     /login, /logout, /logout-everywhere, the one-time sign-in link, /api/v1/me
    admin.py      /admin: users, tokens, the audit log
    audit.py      record(request, action, ...): an audit row for what the request's viewer did
    serve.py      `credit-ledger dashboard`, and the dashboard beside the service in `credit-ledger run`

Every query a page makes takes the viewer's projects: what a viewer may not see is
never read, not read and then hidden.
"""
