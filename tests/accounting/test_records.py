"""Call records: their digest sees every fact, their dict form round-trips."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ledger.accounting.records import CallRecord, ResponseFacts, Usage, record_digest, record_from_dict, record_to_dict


def test_the_record_digest_sees_every_field_and_nothing_else():
    when = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    usage = Usage(194, 229, 457, 0, 0, 880)
    facts = ResponseFacts("chatcmpl-1", "gemini-3.1-pro-preview", "stop", usage, Decimal("0.25"), None, None, ("a",))
    record = CallRecord("c1", when, "completed", "gemini-3.1-pro", True, "low", False, "none", 1, when, when, 200,
                        False, facts, "f" * 32, "Zq9x", "search", "u-42", {"b": "2", "a": "1"})
    digest = record_digest(record)
    assert digest == record_digest(record._replace(tags={"a": "1", "b": "2"}))  # tag order is not content

    def changed(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return value + 1
        if isinstance(value, str):
            return value + "x"
        if isinstance(value, Decimal):
            return value + Decimal("0.01")
        if isinstance(value, datetime):
            return value + timedelta(microseconds=1)
        if isinstance(value, tuple):
            return value + ("z",)
        if isinstance(value, dict):
            return {**value, "c": "3"}
        raise AssertionError(f"no change for {value!r}")

    for name in CallRecord._fields:
        if name != "response":
            assert record_digest(record._replace(**{name: changed(getattr(record, name))})) != digest, name
    for name in ResponseFacts._fields:
        if name != "usage":
            other = facts._replace(**{name: changed(getattr(facts, name)) if getattr(facts, name) else "x"})
            assert record_digest(record._replace(response=other)) != digest, name
    for name in Usage._fields:
        other = facts._replace(usage=usage._replace(**{name: getattr(usage, name) + 1}))
        assert record_digest(record._replace(response=other)) != digest, name
    assert record_digest(record._replace(response=facts._replace(usage=None))) != digest


def test_a_record_survives_its_dict_form_exactly():
    when = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    facts = ResponseFacts("chatcmpl-1", "gemini-3.1-pro-preview", "stop", Usage(194, 229, 457, 0, 0, 880),
                          Decimal("0.25088"), None, None, ("a",))
    record = CallRecord("c1", when, "completed", "gemini-3.1-pro", True, "low", False, None, 1, when, when, 200,
                        False, facts, "f" * 32, "Zq9x", "search", "u-42", {"a": "1"})
    again = record_from_dict(record_to_dict(record))
    assert again == record and record_digest(again) == record_digest(record)
    assert type(again.credits_charged) is Decimal
