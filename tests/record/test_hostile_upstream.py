"""Whatever the upstream answers, good records beside bad ones land, flagged, and nothing key-shaped is kept."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from factories import make_raw_capture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from ledger.accounting.pricing import CLASSES
from ledger.sink.capture import held_without_secrets
from ledger.sink.wire import encode
from ledger.sink.writer import LedgerWriter
from ledger.store.engine import Ledger
from ledger.store.models import Call, RejectedRecord

KEY = "sk-live-0a1b2c3d4e5f60718293a4b5c6d7e8f9"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**40, 10**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.just(KEY),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["id", "model", "usage", "prompt_tokens", "completion_tokens", "total_tokens", "credits_consumed", "choices",
         "finish_reason", "error", "code", "type", "message", "completion_tokens_details", "reasoning_tokens"]),
        inner, max_size=6),
    max_leaves=25,
)
bodies = st.one_of(st.binary(max_size=300), st.builds(lambda v: json.dumps(v).encode(), json_values),
                   st.builds(lambda v: b"data: " + json.dumps(v).encode() + b"\n\ndata: [DONE]\n\n", json_values))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(bodies, st.sampled_from([200, 401, 429, 500, 503]), st.booleans()), min_size=1, max_size=6))
def test_bad_bodies_beside_good_ones_all_land_as_records_and_no_key_is_kept(ledger_template, answers):
    with tempfile.TemporaryDirectory() as tmp:
        url = ledger_template.new_sqlite(Path(tmp))  # a copy: a migration per example is most of its time
        writer = LedgerWriter(url)
        writer.connect()
        try:
            lines = []
            for n, (body, status, stream) in enumerate(answers):
                raw = make_raw_capture(n % 3, call_id=f"bad-{n}")
                content_type = b"text/event-stream" if stream else b"application/json"
                kept = held_without_secrets([body + KEY.encode()], content_type, None, status, "completed")
                lines.append(encode(raw._replace(http_status=status, content_type=content_type, response=kept)))
            good = [encode(make_raw_capture(i, call_id=f"good-{i}")) for i in range(3)]
            result = writer.write([(None, line, None) for line in [good[0], *lines, good[1], good[2]]])
        finally:
            writer.close()
        assert (result.inserted, result.conflicts, result.kept_aside) == (len(answers) + 3, 0, 0)
        with Ledger(url) as ledger, ledger.session() as session:
            assert session.scalar(select(func.count()).select_from(Call)) == len(answers) + 3
            assert session.scalar(select(func.count()).select_from(RejectedRecord)) == 0
            assert set(session.scalars(select(Call.pricing_class))) <= set(CLASSES)
            rows = session.execute(text("SELECT * FROM calls")).all()
        assert not any(KEY in str(value) for row in rows for value in row)
