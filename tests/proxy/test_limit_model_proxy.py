"""Through the proxy, a model-scoped hard limit reads the model from the whole body, even one that arrives in pieces
(gathered, up to max_body_bytes, only while such a limit is enforced)."""

from __future__ import annotations

from dataclasses import replace

import httpx2
import pytest

from hostile_input import CAPPED_BODIES, OTHER_BODIES, counting_sim, model_capped_settings  # noqa: F401 (counting_sim: a fixture)
from proxy_parts import ProxyUnderTest, proxy_settings

KEY = "sk-limit-model-00000000001"


@pytest.mark.parametrize("streamed", [False, True], ids=["sized", "in pieces"])
def test_a_model_scoped_limit_reads_the_model_of_the_whole_body(database_url, tmp_path, counting_sim, streamed):
    settings = replace(proxy_settings(database_url, tmp_path, max_body_bytes=1 << 20),
                       alerting=model_capped_settings(database_url, tmp_path).alerting)
    with ProxyUnderTest(counting_sim.base_url, settings) as proxy, httpx2.Client(timeout=30) as client:

        def post(body: bytes) -> int:
            content = iter([body[:10], body[10:]]) if streamed else body
            return client.post(proxy.base_url + "/chat/completions", content=content,
                               headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}).status_code

        capped_answers = {name: post(body) for name, body in CAPPED_BODIES.items()}
        reached = counting_sim.reached
        other_answers = {name: post(body) for name, body in OTHER_BODIES.items()}
        too_large = post(b'{"model": "gemini-2.5-flash", "messages": [], "x": "' + b"x" * (1 << 20) + b'"}')
    assert capped_answers == {name: 402 for name in CAPPED_BODIES} and reached == 0
    assert 402 not in other_answers.values() and counting_sim.reached == len(OTHER_BODIES)
    assert too_large == 413
