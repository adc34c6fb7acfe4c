"""The recording proxy: any client that can set a base URL gets its chat calls into the ledger.

`app.ProxyApp` forwards `/v1/*` to one upstream through the recording
transport; `guard` refuses what must not be forwarded and maps proxy keys;
`server` runs it under uvicorn, in one process or several.
"""
