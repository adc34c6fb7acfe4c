"""A model-scoped hard limit decides on the model as the upstream reads it: the whole JSON body, its last "model" key at
the top level, escapes decoded, however long the body and however it is sent (the proxy's: tests/proxy)."""

from __future__ import annotations

import httpx2
import pytest

from hostile_input import CAPPED_BODIES, OTHER_BODIES, model_capped_settings

from ledger.record.recorder import Recorder

def answer(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"id": "chatcmpl-1", "choices": [], "credits_consumed": 1})


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "in pieces"])
def test_a_model_scoped_limit_reads_the_model_as_the_upstream_does(database_url, tmp_path, streamed):
    rec = Recorder(settings=model_capped_settings(database_url, tmp_path))
    try:
        client = httpx2.Client(transport=rec.transport(httpx2.MockTransport(answer)))

        def post(body: bytes) -> int:
            content = iter([body[:10], body[10:]]) if streamed else body
            return client.post("http://sim/v1/chat/completions", content=content,
                               headers={"Content-Type": "application/json"}).status_code

        capped_answers = {name: post(body) for name, body in CAPPED_BODIES.items()}
        other_answers = {name: post(body) for name, body in OTHER_BODIES.items()}
        client.close()
    finally:
        rec.close()
    assert capped_answers == {name: 402 for name in CAPPED_BODIES}
    if not streamed:  # a body in pieces cannot be read before it is sent: it counts in every model's limit
        assert other_answers == {name: 200 for name in OTHER_BODIES}
