"""The recorder's own cost a call, in-process: a chat call through a transport answering from memory, recorded
with a sink that discards, against the same transport bare. Min of 7 blocks of 20,000 calls each.

It runs the `ledger` first on the path, so one copy of this file measures any checkout (run it with that
checkout's venv and PYTHONPATH=the checkout, e.g. through bench_trees.py or a loop over worktrees):

    PYTHONPATH=/tmp/before /tmp/before/.venv/bin/python benchmarks/bench_inprocess.py before
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from ledger.config import Settings

try:
    from ledger.record.recorder import Recorder
except ImportError:  # the flat package before the layout
    from ledger.recorder import Recorder  # type: ignore[no-redef]

BODY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gemini-3.1-pro-preview",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi " * 100}}],
    "usage": {"prompt_tokens": 194, "completion_tokens": 229, "total_tokens": 880,
              "completion_tokens_details": {"reasoning_tokens": 457, "audio_tokens": 0, "text_tokens": 0}},
    "credits_consumed": 0.25}).encode()


class NullSink:
    def emit(self, capture) -> None:
        pass

    def flush(self, timeout=None) -> bool:
        return True

    def close(self, timeout=5.0) -> None:
        pass


class Stream(httpx2.SyncByteStream):
    def __iter__(self):
        yield BODY

    def close(self) -> None:
        pass


class Memory(httpx2.BaseTransport):
    def handle_request(self, request):
        return httpx2.Response(200, headers={"content-type": "application/json"}, stream=Stream())


def per_call_us(transport, request, calls: int = 20_000) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        response = transport.handle_request(request)
        for _chunk in response.stream:
            pass
        response.stream.close()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "this tree"
    recorder = Recorder(sink=NullSink(), settings=Settings(secret_path=str(Path(tempfile.mkdtemp()) / "secret")))
    recorded, plain = recorder.transport(Memory()), Memory()
    request = httpx2.Request(
        "POST", "http://sim/v1/chat/completions",
        json={"model": "gemini-3.1-pro", "messages": [{"role": "user", "content": "Say hello"}], "stream": False},
        headers={"Authorization": "Bearer sk-bench-0000000000000001", "x-stainless-retry-count": "0",
                 "user-agent": "OpenAI/Python 3.54.0"})
    per_call_us(recorded, request, 2000), per_call_us(plain, request, 2000)
    blocks = [(per_call_us(recorded, request), per_call_us(plain, request)) for _ in range(7)]
    print(f"{label}: recorded {min(a for a, _ in blocks):.2f} plain {min(b for _, b in blocks):.2f} "
          f"added {min(a - b for a, b in blocks):.2f} us a call")


if __name__ == "__main__":
    main()
