"""Where alerts go: a Slack incoming webhook, a webhook signed the Standard Webhooks way, email over SMTP, the log.

A channel's URL, signing secret and SMTP password come from the environment
when a command that sends starts (`senders_for`: an unset variable is one
ConfigError, before anything is sent); they are never stored, journalled or
logged, and a failed attempt's detail never holds them. A send either
returns a short detail ("HTTP 200") or raises `DeliveryFailed` (to be tried
again), or `SentUnconfirmed` (sent whole, unanswered, and not to be repeated).

Each attempt has one deadline, the channel's timeout, for the whole of it
(connecting, sending, reading the answer): at the deadline its connection is
shut down (`Deadline`), so a receiver that drips its answer a byte or a line at
a time, each under the timeout, cannot hold an attempt, its job or its lease.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import smtplib
import socket
import ssl
import threading
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Protocol

import httpx2

from .. import redact
from ..config.alerts import EMAIL, LOG, SLACK, WEBHOOK, ChannelConfig
from ..config.checks import environment_value
from ..errors import ConfigError
from ..exactjson import default, dumps
from .credits import retry_after_seconds

log = redact.logger("ledger.alerts")
USER_AGENT = "credit-ledger-alerts"


class Notice(NamedTuple):
    """One message to send: an alert, its resolved notice, or a test."""

    message_id: str  # the same on every attempt
    event_type: str  # budget.threshold, balance.runway.resolved, test, ...
    title: str
    text: str
    data: dict[str, Any]  # the alert's facts (exact values)
    at: datetime  # when this attempt is made (the webhook's timestamp)
    attachments: tuple[str, ...] = ()  # files an email attaches (a scheduled report's); the others name them


class DeliveryFailed(Exception):
    """An attempt that did not deliver; `detail` holds no URL and no secret."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


class SentUnconfirmed(DeliveryFailed):
    """A message the receiver got whole but did not answer in time: it may show, and sending it again may show it twice."""


class Sender(Protocol):
    name: str

    def send(self, notice: Notice) -> str: ...
    def close(self) -> None: ...


def webhook_secret(text: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` and base64 (read as the reference libraries read it)."""
    body = text[len("whsec_"):] if text.startswith("whsec_") else text
    try:
        key = base64.b64decode(body + "==")
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: v1, and the base64 HMAC-SHA256 of `id.timestamp.body`."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _redact(text: str, *secrets: str | None) -> str:
    """An error's text without the channel's URL or password, nor anything key-shaped (ledger.redact)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return redact.redact(text)


class Deadline:
    """One attempt's deadline: `seconds` after entering, every connection it watches is shut down.

    A shut-down connection ends whatever waits on it (a read, a write, a TLS
    handshake) at once; `passed` then tells the sender why it ended. The watch
    holds a duplicate of the socket, so it stays valid while TLS wraps the original.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.passed, self._over = seconds, False, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._over = True
            for sock in self._sockets:
                sock.close()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._over:
                return
            self._sockets.append(sock.dup())
            if self.passed:
                _shut(self._sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.passed = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the other side


# ---------------------------------------------------------------- the senders


class _HttpSender:
    # Whether a message the receiver kept past the timeout is sent again: yes where it can tell a repeat (webhook-id).
    resend_unanswered = True

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name, self._url, self._timeout = name, url, timeout
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"channel {name!r}: its URL variable does not hold an http(s) URL")
        # A fresh connection per message: a kept-alive one the receiver closed meanwhile would fail as
        # "unanswered" although nothing reached it (alerts are few; the handshake costs nothing that matters).
        self._client = httpx2.Client(timeout=timeout, follow_redirects=False, headers={"user-agent": USER_AGENT},
                                     limits=httpx2.Limits(max_keepalive_connections=0))

    def _post(self, body: bytes, headers: dict[str, str]) -> str:
        sent = False

        def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal sent
            if event == "connection.connect_tcp.complete":
                deadline.watch(info["return_value"].get_extra_info("socket"))
            elif event == "http11.send_request_body.complete":
                sent = True

        deadline = Deadline(self._timeout)
        try:
            # The status and the headers are the answer; the body is never read, so a receiver that
            # drips or floods one cannot hold an attempt past its lease, nor fill the memory.
            with deadline, self._client.stream(
                    "POST", self._url, content=body, headers={"content-type": "application/json", **headers},
                    extensions={"trace": trace}) as response:
                status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx2.HTTPError as error:
            # A ReadTimeout is raised only once the whole request was written (httpcore sends it before it reads),
            # and the deadline counts as one when it cut the wait for the answer: the receiver kept the request,
            # most likely it is acting on it. A connection dropped before any answer (ReadError,
            # RemoteProtocolError) is most often a restart or a load balancer that never passed it on: tried again.
            if not (isinstance(error, httpx2.ReadTimeout) or (deadline.passed and sent)):
                if deadline.passed:
                    raise DeliveryFailed(f"Timeout: not sent within {self._timeout:g} s") from None
                raise DeliveryFailed(f"{type(error).__name__}: {_redact(str(error), self._url)[:200]}") from None
            what = f"ReadTimeout: no answer within {self._timeout:g} s"
            if self.resend_unanswered:
                raise DeliveryFailed(what) from None
            raise SentUnconfirmed(f"sent, unconfirmed ({what}); not sent again: the receiver cannot tell a repeat") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}", retry_after_seconds(retry_after))
        return f"HTTP {status}"

    def close(self) -> None:
        self._client.close()


class SlackSender(_HttpSender):
    """An incoming webhook: {"text": ...}, a message a person reads.

    Slack has no message id to de-duplicate on: a message sent whole and left
    unanswered past the timeout is recorded as sent, unconfirmed, and not sent again.
    """

    resend_unanswered = False

    def send(self, notice: Notice) -> str:
        text = f"*{notice.title}*\n{notice.text}"
        return self._post(dumps({"text": text}, ensure_ascii=False).encode(), {})


class WebhookSender(_HttpSender):
    """JSON ({type, timestamp, data}) signed the Standard Webhooks way."""

    def __init__(self, name: str, url: str, key: bytes, timeout: float) -> None:
        super().__init__(name, url, timeout)
        self._key = key

    def send(self, notice: Notice) -> str:
        body = dumps({"type": notice.event_type, "timestamp": notice.at,
                      "data": {**notice.data, "title": notice.title, "message": notice.text}}, sort_keys=True).encode()
        timestamp = int(notice.at.timestamp())
        return self._post(body, {"webhook-id": notice.message_id, "webhook-timestamp": str(timestamp),
                                 "webhook-signature": sign(self._key, notice.message_id, timestamp, body)})


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection the attempt's deadline watches; over TLS from the start when `tls` is given."""

    def __init__(self, host: str, port: int, timeout: float, deadline: Deadline, tls: ssl.SSLContext | None) -> None:
        self._deadline, self._tls = deadline, tls
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        self._deadline.watch(sock)
        # As smtplib.SMTP_SSL wraps it (the TLS handshake is under the deadline too).
        return self._tls.wrap_socket(sock, server_hostname=self._host) if self._tls else sock


class EmailSender:
    """SMTP with STARTTLS or TLS and a login where configured (stdlib smtplib)."""

    def __init__(self, config: ChannelConfig, password: str | None) -> None:
        self.name, self._config, self._password = config.name, config, password

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._config.ca_file)

    def send(self, notice: Notice) -> str:
        config = self._config
        message = EmailMessage()
        message["Subject"] = f"[credit-ledger] {notice.title}"
        message["From"], message["To"] = config.sender, ", ".join(config.to)
        message["Message-ID"] = f"<{notice.message_id}@credit-ledger>"
        message.set_content(f"{notice.text}\n\n{_details(notice.data)}\n")
        _attach(message, notice.attachments)
        deadline = Deadline(config.timeout)
        try:
            with deadline, _SMTP(config.host, config.port, config.timeout, deadline,
                                 self._context() if config.security == "tls" else None) as smtp:
                if config.security == "starttls":
                    smtp.starttls(context=self._context())
                if config.username:
                    smtp.login(config.username, self._password or "")
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
            if deadline.passed:  # the connection was shut at the deadline: what failed next says nothing more
                raise DeliveryFailed(f"Timeout: the SMTP exchange took past {config.timeout:g} s") from None
            raise DeliveryFailed(f"{type(error).__name__}: {_redact(str(error), self._password)[:200]}") from None
        if refused:
            raise DeliveryFailed(f"refused recipients: {', '.join(sorted(refused))}")
        return f"SMTP accepted for {len(config.to)} recipient(s)"

    def close(self) -> None:
        pass


MAX_ATTACHED = 20 * 2**20  # bytes of files one email carries; past it a file is named, not attached
_MEDIA_TYPES = {".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                ".csv": ("text", "csv"), ".json": ("application", "json")}


def _attach(message: EmailMessage, paths: tuple[str, ...]) -> None:
    """Attach each file, as long as the email stays under MAX_ATTACHED; a file that is gone or too large is named."""
    total, left_out = 0, []
    for name in paths:
        path = Path(name)
        try:
            size = path.stat().st_size
            if total + size > MAX_ATTACHED:
                left_out.append(f"{path.name}: too large to attach ({size:,} bytes), at {path}")
                continue
            data = path.read_bytes()
        except OSError as error:
            left_out.append(f"{path.name}: cannot be read ({error.strerror or type(error).__name__}), at {path}")
            continue
        total += len(data)
        maintype, subtype = _MEDIA_TYPES.get(path.suffix.lower(), ("application", "octet-stream"))
        # As bytes (base64), text too: the file arrives as written, its line ends untouched.
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    if left_out:
        message.add_attachment("\n".join(left_out) + "\n", subtype="plain", filename="not-attached.txt")


class LogSender:
    """A line in the log (ledger.alerts, WARNING; resolved notices and tests at INFO)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, notice: Notice) -> str:
        level = logging.INFO if notice.event_type == "test" or notice.event_type.endswith(".resolved") else logging.WARNING
        log.log(level, "alert [%s] %s: %s", self.name, notice.title, notice.text)
        return "logged"

    def close(self) -> None:
        pass


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return "" if value is None else str(default(value)) if isinstance(value, (Decimal, datetime)) else str(value)


def _details(data: Mapping[str, Any]) -> str:
    """The alert's facts, one a line, amounts as exact decimals (the message says them in words)."""
    return "\n".join(f"{name}: {_plain(value)}" for name, value in sorted(data.items()))


def sender_for(channel: ChannelConfig, environ: Mapping[str, str] | None = None) -> Sender:
    """The sender of one channel, its secrets read from the environment now (ConfigError when one is unset)."""
    environ = os.environ if environ is None else environ
    if channel.kind == LOG:
        return LogSender(channel.name)
    where = f"channel {channel.name!r}"
    if channel.kind == EMAIL:
        password = environment_value(environ, channel.password_env, where, "the SMTP password") if channel.password_env else None
        return EmailSender(channel, password)
    url = environment_value(environ, channel.url_env, where, "the URL")
    if channel.kind == SLACK:
        return SlackSender(channel.name, url, channel.timeout)
    assert channel.kind == WEBHOOK
    secret = environment_value(environ, channel.secret_env, where, "the signing secret")
    try:
        key = webhook_secret(secret)
    except ValueError as error:
        raise ConfigError(f"channel {channel.name!r}: {channel.secret_env} is {error}") from None
    return WebhookSender(channel.name, url, key, channel.timeout)


def senders_for(channels: tuple[ChannelConfig, ...], environ: Mapping[str, str] | None = None) -> dict[str, Sender]:
    """A sender for every channel, or the ConfigError of the first that cannot be made (none is left open)."""
    made: dict[str, Sender] = {}
    try:
        for channel in channels:
            made[channel.name] = sender_for(channel, environ)
    except BaseException:
        close_all(made)
        raise
    return made


def close_all(senders: Mapping[str, Sender]) -> None:
    for sender in senders.values():
        sender.close()
