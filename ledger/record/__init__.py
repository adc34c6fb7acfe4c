"""The caller's path: the transports that see each call's bytes, the call's state, the hard limits, the Recorder.

transport -> call (the bytes as the caller reads them, one `RawCapture` at
the end) -> the sink (`ledger.sink`), which journals it and writes it.
"""
