"""The AI Video API simulated on loopback, for the demo, the tests and the benchmarks.

A thin Starlette shell over the pure `Platform` of `ledger.sim.platform` (accounts,
billing, faults): `create_app()` serves it, `SimulatorServer` runs it under uvicorn
in a background thread, `serve()` runs it in the foreground for the CLI.

Endpoints: POST /v1/chat/completions, GET /v1/credits, and for tests (no auth)
POST /sim/topup, GET /sim/state, POST /sim/faults, POST /sim/reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .platform import Platform, fingerprint
from .values import (
    FAULTS, MODELS, AccountConfig, CallCharge, KeySettings, SimError, SimResponse, SimulatorConfig, Usage, dumps,
)

__all__ = [
    "AccountConfig", "CallCharge", "FAULTS", "KeySettings", "MODELS", "Platform", "SimResponse",
    "SimulatorConfig", "SimulatorServer", "StreamCut", "Usage", "create_app", "dumps", "fingerprint", "serve",
]

COALESCE_BYTES = 64 * 1024  # SSE events are sent in blocks of about this size unless paced
# Knobs that POST /sim/faults may change, with how a JSON value becomes the config's type.
RUNTIME_KNOBS: dict[str, Any] = {
    "faults": lambda value: {str(name): Decimal(str(rate)) for name, rate in dict(value).items()},
    "allow_fault_headers": bool,
    "overcharge_factor": lambda value: Decimal(str(value)),
    "charge_precision": lambda value: Decimal(str(value)),
    "wrong_rate_model": str,
    "chunk_latency": float,
    "cut_after_chunks": int,
    "credits_latency": float,
    "credits_status": lambda value: None if value is None else int(value),
    "credits_retry_after": int,
    "credits_garbled": lambda value: None if value in (None, False) else "non_json" if value is True else str(value),
}


class StreamCut(Exception):
    """Raised inside a response body on purpose, so that uvicorn breaks the connection."""


class _QuietStreamCut(logging.Filter):
    # uvicorn logs every exception of an app; a deliberate cut is not news.
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        return not isinstance(error, StreamCut)


def _quiet_stream_cuts() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietStreamCut) for existing in logger.filters):
        logger.addFilter(_QuietStreamCut())


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, kind: str = "invalid_request_error") -> Response:
    return _json(status, {"error": {"code": code, "message": message, "type": kind}})


def _api_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw, parse_float=Decimal) if raw else None
    except ValueError:
        raise SimError("invalid_request", "The body is not valid JSON.") from None


async def _send(answer: SimResponse) -> Response:
    if answer.events is None:
        if answer.chunk_delay:
            await asyncio.sleep(answer.chunk_delay)
        body = answer.body()
        if answer.abort:  # a cut JSON body: half of it, then the connection breaks
            return StreamingResponse(_sse(SimResponse(answer.status, events=iter([body[: len(body) // 2]]),
                                                      abort=True)),
                                     answer.status, {"content-length": str(len(body)), **answer.headers},
                                     media_type="application/json")
        return Response(body, answer.status, dict(answer.headers), media_type="application/json")
    headers = {"cache-control": "no-cache", **answer.headers}
    return StreamingResponse(_sse(answer), answer.status, headers, media_type="text/event-stream")


async def _sse(answer: SimResponse) -> AsyncIterator[bytes]:
    if answer.chunk_delay:
        for index, event in enumerate(answer.events):
            if index:
                await asyncio.sleep(answer.chunk_delay)
            yield event
    else:
        # Generating an event is cheap; sending each one alone is not (100 MB streams).
        block: list[bytes] = []
        size = 0
        for event in answer.events:
            block.append(event)
            size += len(event)
            if size >= COALESCE_BYTES:
                yield b"".join(block)
                block.clear()
                size = 0
        if block:
            yield b"".join(block)
    if answer.abort:
        raise StreamCut("the cut_stream fault broke the connection")


def _credits_fault(answer: SimResponse, config: SimulatorConfig) -> SimResponse:
    """The /v1/credits answer as the configured fault makes it: failing, or garbled."""
    if config.credits_status is not None:
        status = int(config.credits_status)
        code = {429: "rate_limit_exceeded", 503: "upstream_error"}.get(status, "internal_error")
        headers = {"retry-after": str(config.credits_retry_after)} if status in (429, 503) else {}
        return replace(SimError(code).response(headers), status=status)
    figures = answer.payload["data"]
    if config.credits_garbled == "non_json":
        return SimResponse(200, {"html": "<html><body>502 Bad Gateway</body></html>"}, malformed=True)
    if config.credits_garbled == "wrong_shape":
        return SimResponse(200, {"code": 200, "msg": "success", "balance": figures["balance"]})
    if config.credits_garbled == "non_integer":
        halves = {name: Decimal(value) + Decimal("0.5") for name, value in figures.items()}
        return SimResponse(200, {"code": 200, "msg": "success", "data": halves})
    return answer


def create_app(config: SimulatorConfig | None = None, platform: Platform | None = None) -> Any:
    """The simulator's Starlette app, over `platform` (or a new one made from `config`)."""
    platform = platform if platform is not None else Platform(config)

    async def chat_completions(request: Request) -> Response:
        try:
            body = await _read_json(request)
        except SimError as error:
            return await _send(error.response())
        client_ip = request.client.host if request.client else None
        return await _send(platform.complete(body, _api_key(request), request.headers, client_ip))

    async def credits(request: Request) -> Response:
        config = platform.config
        if config.credits_latency:
            await asyncio.sleep(config.credits_latency)
        client_ip = request.client.host if request.client else None
        answer = platform.credits(_api_key(request), client_ip)
        return await _send(_credits_fault(answer, config) if answer.status == 200 else answer)

    async def top_up(request: Request) -> Response:
        try:
            body = await _read_json(request)
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object")
            name = platform.top_up(body.get("credits"), account=body.get("account"), api_key=body.get("api_key"))
        except SimError as error:
            return await _send(error.response())
        except (KeyError, ValueError, TypeError) as error:
            return _error(400, "invalid_request", f"cannot top up: {error}")
        return _json(200, {"account": name, **platform.reported(name)})

    async def state(request: Request) -> Response:
        accounts = {name: {**figures, "consumed_exact": str(figures["consumed_exact"])}
                    for name, figures in platform.state().items()}
        payload: dict[str, Any] = {"accounts": accounts, "calls": len(platform.call_log)}
        if request.query_params.get("calls"):
            payload["call_log"] = [_call_json(call) for call in list(platform.call_log)]
        return _json(200, payload)

    async def faults(request: Request) -> Response:
        try:
            body = await _read_json(request)
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object of knobs")
            if "garbled" in body:
                body.setdefault("credits_garbled", body.pop("garbled"))
            unknown = set(body) - set(RUNTIME_KNOBS)
            if unknown:
                raise ValueError(f"unknown knobs {sorted(unknown)}: known are {sorted(RUNTIME_KNOBS)}")
            config = platform.set_knobs(**{name: RUNTIME_KNOBS[name](value) for name, value in body.items()})
        except SimError as error:
            return await _send(error.response())
        except (ValueError, TypeError, ArithmeticError) as error:
            return _error(400, "invalid_request", f"cannot set knobs: {error}")
        return _json(200, _knobs_json(config))

    async def reset(request: Request) -> Response:
        platform.reset()
        return _json(200, _knobs_json(platform.config))

    async def not_found(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}.")
        return _error(exc.status_code, "not_found", f"No such endpoint: {request.method} {request.url.path}.")

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/credits", credits, methods=["GET"]),
        Route("/sim/topup", top_up, methods=["POST"]),
        Route("/sim/state", state, methods=["GET"]),
        Route("/sim/faults", faults, methods=["POST"]),
        Route("/sim/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.platform = platform
    return app


def _call_json(call: CallCharge) -> dict[str, Any]:
    return {"id": call.id, "account": call.account, "key_fingerprint": call.key_fingerprint, "model": call.model,
            "status": call.status, "usage": call.usage.as_json(), "credits_charged": str(call.credits_charged),
            "faults": list(call.faults)}


def _knobs_json(config: SimulatorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in RUNTIME_KNOBS} | {"faults": dict(config.faults)}


class SimulatorServer:
    """The simulator under uvicorn on a loopback port, in a background thread; a context manager."""

    def __init__(self, config: SimulatorConfig | None = None, *, platform: Platform | None = None,
                 host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0):
        self.platform = platform if platform is not None else Platform(config)
        self.host, self.port, self._start_timeout = host, port, start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def start(self) -> "SimulatorServer":
        _quiet_stream_cuts()
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when it is
        # stated, and without it every response waits ~40 ms on Nagle and delayed ACKs.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(create_app(platform=self.platform), host=self.host, port=self.port,
                                log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [listener]},
                                        name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                listener.close()
                raise RuntimeError(f"the simulator did not start on {self.root_url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the simulator in the foreground until Ctrl-C or SIGTERM (for `credit-ledger simulate`).

    uvicorn stops gracefully on either, then raises the signal again for the handler it found. SIGTERM's
    is made a no-op here, so that a stop asked for ends the command normally (exit 0), as `run` does.
    """
    _quiet_stream_cuts()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=port, log_level="warning",
                                           lifespan="off", access_log=False, timeout_graceful_shutdown=2))
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if in_main else None
    try:
        server.run()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
