"""Reading the ledger for people: terminal renderings, the call listings and the spend reports."""
