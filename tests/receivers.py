"""Real receivers on loopback for the alert channels: an HTTP endpoint (webhook or Slack) and an SMTP server."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from factories import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Receiver:
    """POST /hook on loopback: keeps every request (headers, body); fails the first `failures` of them with 500."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.failures, self.delay = failures, delay
        self.requests: list[tuple[dict[str, str], bytes]] = []  # every request, failed ones included
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        with self._lock:
            self.requests.append((dict(request.headers), body))
            if len(self.requests) <= self.failures:
                return Response(b"down for maintenance", status_code=500)
            self.accepted.append((dict(request.headers), body))
        return Response(b"ok")

    def __enter__(self) -> "Receiver":
        self._server = LoopbackServer(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])).__enter__()
        self.url = self._server.root_url + "/hook"
        return self

    def __exit__(self, *exc) -> None:
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
