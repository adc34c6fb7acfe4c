"""Real receivers on loopback for the alert channels: an HTTP endpoint (webhook or Slack) and an SMTP server."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from factories import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


class Receiver:
    """POST /hook on loopback: keeps every request (headers, body); fails the first `failures` of them with 500.

    `retry_after` goes with each failure as its Retry-After header. `held`: the
    first that many requests are kept on arrival and answered only once
    `release` is set (a receiver slower than the sender's timeout). `drip`: a
    200 whose body sends one byte, then nothing until `release` is set.
    """

    def __init__(self, failures: int = 0, delay: float = 0.0, retry_after: str | None = None, held: int = 0,
                 drip: bool = False) -> None:
        self.failures, self.delay, self.retry_after, self.held, self.drip = failures, delay, retry_after, held, drip
        self.requests: list[tuple[dict[str, str], bytes]] = []  # every request, failed ones included
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.arrived: list[tuple[dict[str, str], bytes]] = []  # every request as it arrived, held ones included
        self.release = threading.Event()
        self._lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        import asyncio

        body = await request.body()
        with self._lock:
            self.arrived.append((dict(request.headers), body))
            hold = len(self.arrived) <= self.held
        if hold:
            await asyncio.to_thread(self.release.wait, 60)
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.requests.append((dict(request.headers), body))
            if len(self.requests) <= self.failures:
                headers = {"retry-after": self.retry_after} if self.retry_after is not None else None
                return Response(b"down for maintenance", status_code=503 if headers else 500, headers=headers)
            self.accepted.append((dict(request.headers), body))
        if self.drip:
            return StreamingResponse(self._dripped(), media_type="text/plain")
        return Response(b"ok")

    async def _dripped(self):
        import asyncio

        yield b"o"
        await asyncio.to_thread(self.release.wait, 60)
        yield b"k"

    def __enter__(self) -> "Receiver":
        self._server = LoopbackServer(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])).__enter__()
        self.url = self._server.root_url + "/hook"
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.__exit__(*exc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, made by the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class Dripper:
    """A TCP server on loopback that never finishes an answer: it reads until `until` has arrived, sends `first`, then
    `drip` every `every` seconds until closed, each wait far under any timeout (a status line's headers that never
    end, a TLS record a byte at a time, an SMTP greeting a line at a time)."""

    def __init__(self, first: bytes, drip: bytes, until: bytes = b"", every: float = 0.1) -> None:
        self.first, self.drip, self.until, self.every = first, drip, until, every
        self.received: list[bytes] = []
        self._stop = threading.Event()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                data = b""
                while self.until not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.received.append(data)
                connection.sendall(self.first)
                while not self._stop.wait(self.every):
                    connection.sendall(self.drip)
            except OSError:
                return  # the client shut the connection

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def __enter__(self) -> "Dripper":
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._listener.close()
