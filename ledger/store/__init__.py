"""The SQL ledger: its tables, the engine and sessions (the one place that commits), the inserts and queries.

SQLite and PostgreSQL alike; amounts are integer nano-credits, summed in SQL.
"""
