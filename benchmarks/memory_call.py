"""A chat call answered from memory, for the benchmarks that time the recorder's own work: no server, no ledger.

Imports httpx2 only (never `ledger`), so that a benchmark measuring another checkout's code can use it.
"""

from __future__ import annotations

import json
import time

import httpx2

# A non-streaming answer as the API gives it (usage, reasoning tokens, the platform's charge).
CHAT_ANSWER = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gemini-3.1-pro-preview",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi " * 100}}],
    "usage": {"prompt_tokens": 194, "completion_tokens": 229, "total_tokens": 880,
              "completion_tokens_details": {"reasoning_tokens": 457, "audio_tokens": 0, "text_tokens": 0}},
    "credits_consumed": 0.25}).encode()


class NullSink:
    """Discards captures: the recorder's own cost, without the journal and the writer thread."""

    def emit(self, capture) -> None:
        pass

    def flush(self, timeout=None) -> bool:
        return True

    def close(self, timeout=5.0) -> None:
        pass


def memory_transport(body: bytes) -> type:
    """An httpx2 transport class that answers every request with `body` (JSON) from memory, as a stream."""

    class Stream(httpx2.SyncByteStream):
        def __iter__(self):
            yield body

        def close(self):
            pass

    class Memory(httpx2.BaseTransport):
        def handle_request(self, request):
            return httpx2.Response(200, headers={"content-type": "application/json"}, stream=Stream())

    return Memory


def per_call_us(transport, request, calls: int) -> float:
    """Microseconds a call of `request` through `transport`, its response read and closed, over `calls` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        response = transport.handle_request(request)
        for _chunk in response.stream:
            pass
        response.stream.close()
    return (time.perf_counter() - started) / calls * 1e6
