"""Every credit-ledger command as a plain typed function: settings and keyword arguments in, text to a given
stream, an exit code (or a value) out. The CLI only parses arguments and calls these; a dashboard calls the same.

Errors are raised (LedgerError and its kinds), never printed: the caller turns them into its own one line.
"""

EXIT_OK = 0
EXIT_PROBLEM = 1  # a problem the user can act on (an account that did not answer)
EXIT_GAP = 3  # `reconcile` found an unexplained gap, or `close` refused for one
EXIT_NOTHING = 4  # `reconcile` had nothing (or only part of the window) to reconcile
EXIT_DIFFERS = 3  # `rollup verify` found rollups that differ from the raw calls
