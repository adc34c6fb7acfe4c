"""A call's header reads: httpx2's own `Headers._list` (private) against the public `Headers.raw` and `multi_items()`.

`ledger.record.call` reads a call's headers three times: the request's for
X-Ledger-* attribution (`RecorderCore.begin`), then at the call's end the
response's Content-Type and Content-Encoding and the request's Authorization,
retry count and Content-Encoding. Each side below does those three reads on
the headers of one real SDK call to the simulator, timed with `timeit` (min
of 7), the sides alternating, twice.

    .venv/bin/python benchmarks/bench_headers.py [rounds]      # 20000 by default
"""

from __future__ import annotations

import sys
import timeit
from operator import itemgetter

import httpx2
import openai

from ledger.record import call
from ledger.sim.server import SimulatorServer

LEDGER = call._LEDGER_HEADERS
LEDGER_STR = frozenset(name.decode() for name in LEDGER)
NAME = itemgetter(1)


class _Keep(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, seen: dict) -> None:
        self.inner, self.seen = inner, seen

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        self.seen.update(request=request, response=response)
        return response


def private(request, response) -> None:
    """What the code does: the three reads of ledger.record.call over the list httpx2 keeps."""
    LEDGER.isdisjoint(map(NAME, call._header_list(request.headers)))
    call._accounting_headers(response)
    call.request_headers(request)


def public_raw(request, response) -> None:
    """The same three reads over `Headers.raw` (a new list a read, names lowered here)."""
    LEDGER.isdisjoint([name.lower() for name, _ in request.headers.raw])
    content_type = coding = None
    for name, value in response.headers.raw:
        name = name.lower()
        if name == b"content-type":
            content_type = value
        elif name == b"content-encoding":
            coding = value
    authorization = retry = None
    encoded = False
    for name, value in request.headers.raw:
        name = name.lower()
        if name == b"authorization":
            authorization = value
        elif name == call._RETRY_HEADER:
            retry = value
        elif name == b"content-encoding":
            encoded = True


def public_multi_items(request, response) -> None:
    """The same three reads over `Headers.multi_items()` (lower-case names; str values, encoded back to bytes)."""
    LEDGER_STR.isdisjoint([name for name, _ in request.headers.multi_items()])
    content_type = coding = None
    for name, value in response.headers.multi_items():
        if name == "content-type":
            content_type = value.encode()
        elif name == "content-encoding":
            coding = value.encode()
    authorization = retry = None
    encoded = False
    for name, value in request.headers.multi_items():
        if name == "authorization":
            authorization = value.encode()
        elif name == "x-stainless-retry-count":
            retry = value.encode()
        elif name == "content-encoding":
            encoded = True


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    seen: dict = {}
    with SimulatorServer() as sim:
        http_client = httpx2.Client(transport=_Keep(httpx2.HTTPTransport(), seen))
        with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim-" + "a" * 40, max_retries=0, http_client=http_client) as client:
            client.chat.completions.create(model="gemini-3.1-pro", messages=[{"role": "user", "content": "hi"}])
    request, response = seen["request"], seen["response"]
    host = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    print(f"host: sum(range(1000)) in {host:.1f} us; {len(request.headers)} request headers, {len(response.headers)} response headers")
    sides = (private, public_raw, public_multi_items)
    figures: dict[str, list[float]] = {side.__name__: [] for side in sides}
    for _ in range(2):
        for side in sides:
            best = min(timeit.repeat(lambda: side(request, response), number=rounds, repeat=7))
            figures[side.__name__].append(best / rounds * 1e6)
    for name, values in figures.items():
        more = [value - base for value, base in zip(values, figures["private"])]
        print(f"{name:19s} " + "  ".join(f"{v:5.2f}" for v in values) + " us a call;  more than private: "
              + "  ".join(f"{m:+.2f}" for m in more))


if __name__ == "__main__":
    main()
