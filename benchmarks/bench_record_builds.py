"""Each record the hot paths build, by its frameless named constructor (`tuple.__new__` of the fields in order)
against its own `__new__` with keywords: what building it by name would add a call (ns, timeit, min of 7).

The recorder builds a RawCapture and the intake a Queued on every call's path; the writer builds a Capture,
a CallRecord, its Usage, ResponseFacts and RequestFacts and a PriceFinding for every record.

    .venv/bin/python benchmarks/bench_record_builds.py
"""

from __future__ import annotations

import timeit

from ledger.accounting.pricing import PriceFinding, price_finding_of
from ledger.accounting.records import (
    CallRecord, RequestFacts, ResponseFacts, Usage, call_record_of, request_facts_of, response_facts_of, usage_of,
)
from ledger.sink.capture import Capture, RawCapture, capture_of, raw_capture_of
from ledger.sink.intake import Queued, queued_of

RECORDS = {  # name: (type, its named constructor)
    "RawCapture (recorder)": (RawCapture, raw_capture_of),
    "Queued (intake)": (Queued, queued_of),
    "Capture (writer)": (Capture, capture_of),
    "CallRecord (writer)": (CallRecord, call_record_of),
    "Usage (writer)": (Usage, usage_of),
    "ResponseFacts (writer)": (ResponseFacts, response_facts_of),
    "RequestFacts (writer)": (RequestFacts, request_facts_of),
    "PriceFinding (writer)": (PriceFinding, price_finding_of),
}


def main() -> None:
    for name, (record_type, named) in RECORDS.items():
        fields = tuple(range(len(record_type._fields)))
        by_name = dict(zip(record_type._fields, fields))
        positional = min(timeit.repeat(lambda: named(fields), number=200_000, repeat=7)) / 200_000
        keywords = min(timeit.repeat(lambda: record_type(**by_name), number=200_000, repeat=7)) / 200_000
        print(f"{name:24} named constructor {positional * 1e9:5.0f} ns, keywords {keywords * 1e9:5.0f} ns, "
              f"+{(keywords - positional) * 1e9:4.0f} ns")


if __name__ == "__main__":
    main()
