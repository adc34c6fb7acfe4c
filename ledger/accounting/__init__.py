"""Accounting: call records, scanning and parsing what the API answered, pricing, and the reconciliation check.

Values in, values out: nothing here does I/O or imports an HTTP, database,
dataframe or scheduling library, so every shell (the recorder, the writer,
the service, the reports) reuses it and it is tested without I/O.
"""
