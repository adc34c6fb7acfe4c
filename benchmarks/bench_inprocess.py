"""The recorder's own cost a call, in-process: a chat call through a transport answering from memory, recorded
with a sink that discards, against the same transport bare. Min of 7 blocks of 20,000 calls each.

It runs the `ledger` first on the path, so one copy of this file measures any checkout (run it with that
checkout's venv and PYTHONPATH=the checkout, e.g. through bench_trees.py or a loop over worktrees):

    PYTHONPATH=/tmp/before /tmp/before/.venv/bin/python benchmarks/bench_inprocess.py before
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx2
from memory_call import CHAT_ANSWER, NullSink, memory_transport, per_call_us  # this folder's: no ledger in it

from ledger.config import Settings

try:
    from ledger.record.recorder import Recorder
except ImportError:  # the flat package before the layout
    from ledger.recorder import Recorder  # type: ignore[no-redef]

Memory = memory_transport(CHAT_ANSWER)


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
    blocks = [(per_call_us(recorded, request, 20_000), per_call_us(plain, request, 20_000)) for _ in range(7)]
    print(f"{label}: recorded {min(a for a, _ in blocks):.2f} plain {min(b for _, b in blocks):.2f} "
          f"added {min(a - b for a, b in blocks):.2f} us a call")


if __name__ == "__main__":
    main()
