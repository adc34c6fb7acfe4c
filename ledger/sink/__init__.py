"""The durable pipeline: one named, versioned record in (a `RawCapture`), a row in the ledger out.

capture (the record and its settling) -> intake (journal, queue) -> writer
loop -> writer processes -> writer (build, price, insert) -> the SQL ledger;
wire is the journal's versioned codec, sink holds them together. Nothing
here imports the caller's path (`ledger.record`), which emits into it.
"""
