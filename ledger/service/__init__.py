"""The service: the /v1/credits client, balance polls, and the jobs `credit-ledger run` schedules."""
