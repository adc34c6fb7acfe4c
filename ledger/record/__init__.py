"""Recording: the transports that see each call's bytes, the capture, the journal, and the writer into the ledger.

transport (capture on the caller's path) -> intake (journal, queue) -> writer
loop -> writer processes -> writer (build, price, insert) -> the SQL ledger.
"""
