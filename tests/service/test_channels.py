"""The channels against real receivers on loopback: a flaky signed webhook, Slack, SMTP with STARTTLS and a login."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import ssl
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from factories import insert_records, make_call
from factories import wait_for
from receivers import Dripper, Receiver, free_port, self_signed_certificate
from standardwebhooks import Webhook

from ledger.accounting.budgets import Budget, Scope
from ledger.config.alerts import AlertSettings, ChannelConfig
from ledger.config import Settings
from ledger.errors import ConfigError
from ledger.service.alerting import notify
from ledger.service.channels import DeliveryFailed, Notice, sender_for, senders_for, sign, webhook_secret
from ledger.service.delivery import DeliveryPolicy
from ledger.store.alerts import alert_history

SECRET = "whsec_" + base64.b64encode(b"a secret of twenty-four!").decode()


def settings_for(database_url, tmp_path, channel: ChannelConfig, limit=Decimal(10)) -> Settings:
    budget = Budget("search-monthly", Scope(project="search"), "month", "Europe/Berlin", limit,
                    thresholds=(80,), channels=(channel.name,))
    return Settings(database_url=database_url, secret_path=str(tmp_path / "secret"),
                    alerting=AlertSettings((budget,), (), (channel,)))


def spend(ledger, credits) -> None:
    insert_records(ledger, [make_call(datetime.now(timezone.utc) - timedelta(minutes=1), credits, project="search")])


def test_the_signature_is_the_one_the_reference_library_checks():
    key = webhook_secret(SECRET)
    body = b'{"type": "test"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(datetime.now(timezone.utc).timestamp())),
               "webhook-signature": ""}
    headers["webhook-signature"] = sign(key, "msg_1", int(headers["webhook-timestamp"]), body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "test"}
    with pytest.raises(Exception):
        Webhook("whsec_" + base64.b64encode(b"another secret, 24 bytes").decode()).verify(body, headers)
    # A secret given without its prefix is read the same way; an empty one is refused.
    assert webhook_secret(SECRET.removeprefix("whsec_")) == key
    with pytest.raises(ValueError):
        webhook_secret("whsec_")


def test_a_webhook_that_fails_three_times_gets_the_alert_on_the_fourth_once_signed(ledger, tmp_path, monkeypatch, caplog):
    with Receiver(failures=3) as receiver:
        monkeypatch.setenv("ONCALL_URL", receiver.url)
        monkeypatch.setenv("ONCALL_SECRET", SECRET)
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("oncall", "webhook", url_env="ONCALL_URL", secret_env="ONCALL_SECRET"))
        spend(ledger, 9)
        policy = DeliveryPolicy(base_seconds=0.05, max_seconds=0.2)
        delivered: list[int] = []  # each run evaluates and delivers what is due, as the service's job does
        wait_for(lambda: delivered.append(notify(ledger, settings, host="t", policy=policy)[1].delivered) or sum(delivered),
                 timeout=20, what="the alert delivered")
        for _ in range(3):  # later runs send nothing more
            delivered.append(notify(ledger, settings, host="t", policy=policy)[1].delivered)
        assert sum(delivered) == 1 and len(receiver.requests) == 4 and len(receiver.accepted) == 1
        headers, body = receiver.accepted[0]
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["type"] == "budget.threshold" and payload["data"]["alert"] == "budget:search-monthly:80:" + payload["data"]["period"]["label"]
        assert payload["data"]["spent"] == "9" and payload["data"]["limit"] == "10" and payload["data"]["threshold"] == 80
        # The same webhook-id on every attempt: a receiver can tell a retry from a new alert.
        assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    with ledger.session() as session:
        ((_, ((delivery, attempts),)),) = alert_history(session)
    assert [a.detail for a in attempts] == ["HTTP 500"] * 3 + ["HTTP 200"] and delivery.status == "delivered"
    logged = caplog.text + "".join(a.detail for a in attempts)
    assert receiver.url not in logged and SECRET not in logged  # never the URL or the secret


def test_slack_gets_a_text_a_person_reads(ledger, tmp_path, monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("SLACK_URL", receiver.url)
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL"))
        spend(ledger, "8.5")
        assert notify(ledger, settings, host="t")[1].delivered == 1
    ((headers, body),) = receiver.accepted
    assert headers["content-type"] == "application/json"
    text = json.loads(body)["text"]
    assert set(json.loads(body)) == {"text"}
    assert text.startswith("*Budget search-monthly at 80%*\n")
    for words in ("project=search", "8.50 of 10.00 credits", "Europe/Berlin", "projected"):
        assert words in text, words


class _Inbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def test_email_goes_through_starttls_and_a_login_to_a_real_smtp_server(ledger, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"ledger", b"s3cret-pass"), handled=False)

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True, server_hostname="127.0.0.1")
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "s3cret-pass")
        channel = ChannelConfig("mail", "email", host="127.0.0.1", port=port, security="starttls", username="ledger",
                                password_env="SMTP_PASSWORD", sender="ledger@example.com",
                                to=("finance@example.com", "cfo@example.com"), ca_file=str(cert))
        settings = settings_for(ledger.url, tmp_path, channel)
        spend(ledger, 9)
        report = notify(ledger, settings, host="t")[1]
        assert report.delivered == 1, report
    finally:
        controller.stop()
    assert logins == [(b"ledger", b"s3cret-pass")]
    ((sender, recipients, content),) = inbox.messages
    assert sender == "ledger@example.com" and recipients == ["finance@example.com", "cfo@example.com"]
    message = email.message_from_string(content, policy=email.policy.default)
    assert message["Subject"] == "[credit-ledger] Budget search-monthly at 80%"
    text = message.get_content()
    assert "9.00 of 10.00 credits" in text and "spent: 9" in text.splitlines() and "s3cret-pass" not in content


def test_an_smtp_server_that_refuses_the_login_is_a_failed_attempt_without_the_password(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    controller = Controller(_Inbox(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=lambda *a: AuthResult(success=False, handled=False), auth_require_tls=True,
                            server_hostname="127.0.0.1")
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "wrong-pass")
        sender = sender_for(ChannelConfig("mail", "email", host="127.0.0.1", port=port, username="ledger",
                                          password_env="SMTP_PASSWORD", sender="a@b.c", to=("d@e.f",), ca_file=str(cert)))
        from ledger.service.channels import DeliveryFailed

        with pytest.raises(DeliveryFailed) as failed:
            sender.send(Notice("msg_1", "test", "Test", "hello", {}, datetime.now(timezone.utc)))
        assert "SMTPAuthenticationError" in failed.value.detail and "wrong-pass" not in failed.value.detail
    finally:
        controller.stop()


def test_the_log_channel_and_an_unset_or_bad_secret(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ledger.alerts")
    log = sender_for(ChannelConfig("ops-log", "log"))
    assert log.send(Notice("m", "budget.threshold", "Budget b at 80%", "8 of 10", {}, datetime.now(timezone.utc))) == "logged"
    assert "alert [ops-log] Budget b at 80%: 8 of 10" in caplog.text
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    channel = ChannelConfig("oncall", "webhook", url_env="HOOK_URL", secret_env="HOOK_SECRET")
    with pytest.raises(ConfigError, match="environment variable HOOK_SECRET .* is not set"):
        senders_for((ChannelConfig("l", "log"), channel))
    monkeypatch.setenv("HOOK_SECRET", "whsec_")
    with pytest.raises(ConfigError, match="HOOK_SECRET is not a Standard Webhooks secret"):
        sender_for(channel)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_URL", "ftp://example.com")
    with pytest.raises(ConfigError, match="does not hold an http"):
        sender_for(channel)


# ---------------------------------------------------------------- what each channel promises: Retry-After, slow receivers

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)


def _deliver_at(ledger, settings, minutes: float):
    """One run of the service's job at NOW + minutes: evaluate, then deliver what is due."""
    return notify(ledger, settings, host="t", clock=lambda: NOW + timedelta(minutes=minutes))[1]


def _attempts(ledger):
    with ledger.session() as session:
        ((_, ((delivery, attempts),)),) = alert_history(session)
    return delivery, [(a.outcome, a.detail) for a in attempts]


def test_a_retry_after_of_two_hours_is_honoured_not_cut_to_thirty_minutes(ledger, tmp_path, monkeypatch):
    with Receiver(failures=1, retry_after="7200") as receiver:
        monkeypatch.setenv("SLACK_URL", receiver.url)
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL"))
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        assert _deliver_at(ledger, settings, 0).failed == 1
        for minutes in (31, 60, 119):  # the backoff alone would have tried again at 30 minutes
            assert _deliver_at(ledger, settings, minutes).sent == ()
        assert len(receiver.requests) == 1
        assert _deliver_at(ledger, settings, 120).delivered == 1
        assert len(receiver.requests) == 2 and len(receiver.accepted) == 1


def test_a_retry_after_is_honoured_up_to_a_day_so_a_hostile_one_cannot_park_alerts_for_ever():
    policy = DeliveryPolicy()
    assert policy.backoff(1, 7200) == timedelta(hours=2)
    for hostile in (10**12, float("inf")):
        assert policy.backoff(1, hostile) == timedelta(days=1)
    assert policy.backoff(1, None) == timedelta(seconds=30) and policy.backoff(8, None) == timedelta(minutes=30)
    assert policy.backoff(5000, None) == timedelta(minutes=30)  # a month of failures later, still 30 minutes


def test_a_slack_receiver_slower_than_the_timeout_shows_the_alert_once_recorded_sent_unconfirmed(ledger, tmp_path, monkeypatch):
    with Receiver(held=1) as receiver:
        monkeypatch.setenv("SLACK_URL", receiver.url)
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL", timeout=0.5))
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        first = _deliver_at(ledger, settings, 0)
        later = [_deliver_at(ledger, settings, minutes) for minutes in (1, 31, 600)]
        # Slack has no id to tell a repeat by: the message it got whole is not posted a second time.
        assert len(receiver.arrived) == 1
        assert (first.delivered, first.unconfirmed, first.failed) == (1, 1, 0) and all(r.sent == () for r in later)
        assert "1 delivered (1 sent, unconfirmed)" in first.summary()
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "delivered" and attempts == [
        ("unconfirmed", "sent, unconfirmed (ReadTimeout: no answer within 0.5 s); not sent again: the receiver cannot tell a repeat")]
    # What `budgets --notify` printed and what `credit-ledger alerts` shows say so.
    from ledger.reports.budgets import format_alerts, format_fired

    assert "to finance-slack (attempt 1): sent, unconfirmed (not sent again)" in format_fired((), (), first.sent)
    with ledger.session() as session:
        assert "alert to finance-slack: sent, unconfirmed, 1 attempt(s)" in format_alerts(alert_history(session))


def test_a_slack_message_whose_connection_drops_before_an_answer_is_tried_again(ledger, tmp_path, monkeypatch):
    """A receiver that reads the request and closes the connection (a restart, a load balancer): most likely not posted."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def drop_each_request() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"}" not in data:  # the JSON body's end
                    data += connection.recv(65536)
                received.append(data)

    threading.Thread(target=drop_each_request, daemon=True).start()
    try:
        monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL"))
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        assert _deliver_at(ledger, settings, 0).failed == 1
        assert _deliver_at(ledger, settings, 1).failed == 1 and len(received) == 2
    finally:
        listener.close()
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "pending" and [outcome for outcome, _ in attempts] == ["failed", "failed"]
    assert attempts[0][1].startswith("RemoteProtocolError")


def test_a_slack_message_that_never_left_is_tried_again(ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{free_port()}/hook")  # nothing listens: the connection is refused
    settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL"))
    insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
    assert _deliver_at(ledger, settings, 0).failed == 1
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "pending" and attempts[0][0] == "failed" and attempts[0][1].startswith("ConnectError")


def test_a_webhook_receiver_slower_than_the_timeout_gets_it_again_with_the_same_id(ledger, tmp_path, monkeypatch):
    with Receiver(held=1) as receiver:
        monkeypatch.setenv("ONCALL_URL", receiver.url)
        monkeypatch.setenv("ONCALL_SECRET", SECRET)
        channel = ChannelConfig("oncall", "webhook", url_env="ONCALL_URL", secret_env="ONCALL_SECRET", timeout=0.5)
        settings = settings_for(ledger.url, tmp_path, channel)
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        assert _deliver_at(ledger, settings, 0).failed == 1
        assert _deliver_at(ledger, settings, 1).delivered == 1
        # At least once, with one webhook-id: a Standard Webhooks receiver keeps the first and drops the repeat.
        assert len(receiver.arrived) == 2 and len({h["webhook-id"] for h, _ in receiver.arrived}) == 1
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "delivered" and attempts == [("failed", "ReadTimeout: no answer within 0.5 s"), ("delivered", "HTTP 200")]


def test_a_receiver_that_answers_200_and_drips_its_body_has_the_alert_delivered_at_once(ledger, tmp_path, monkeypatch):
    """The status is the answer: a body that never ends neither holds the attempt nor turns it into a failure."""
    with Receiver(drip=True) as receiver:
        monkeypatch.setenv("ONCALL_URL", receiver.url)
        monkeypatch.setenv("ONCALL_SECRET", SECRET)
        channel = ChannelConfig("oncall", "webhook", url_env="ONCALL_URL", secret_env="ONCALL_SECRET", timeout=0.5)
        settings = settings_for(ledger.url, tmp_path, channel)
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        assert _deliver_at(ledger, settings, 0).delivered == 1
        assert _deliver_at(ledger, settings, 1).sent == () and len(receiver.arrived) == 1
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "delivered" and attempts == [("delivered", "HTTP 200")]


# ---------------------------------------------------------------- one deadline per attempt: receivers that drip

BOUND = 5.0  # seconds: an attempt whose deadline (the channel's timeout) is 1 s returns well within it; today's hung


def _within_bound(attempt):
    """attempt() run in a thread: ('returned' or 'raised', what), as long as it ended within BOUND seconds."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(("returned", attempt()))
        except Exception as error:  # noqa: BLE001 - the outcome is what the test looks at
            outcome.append(("raised", error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert outcome, f"the attempt did not end within {BOUND} s, five times its deadline of 1 s"
    return outcome[0]


def _webhook(url: str):
    return sender_for(ChannelConfig("oncall", "webhook", url_env="U", secret_env="S", timeout=1.0),
                      {"U": url, "S": SECRET})


NOTICE = Notice("msg_1", "test", "Test", "hello", {}, datetime.now(timezone.utc))
HEADERS_WITHOUT_END = (b"HTTP/1.1 200 OK\r\n", b"X-Drip: 1\r\n")  # a header line every 0.1 s, never the blank line


def test_a_webhook_receiver_that_drips_its_headers_is_cut_at_the_deadline_and_gets_it_again():
    """Sent whole, then no answer by the deadline: as a ReadTimeout, tried again (the webhook-id tells a repeat)."""
    with Dripper(*HEADERS_WITHOUT_END, until=b"}") as dripper:
        kind, error = _within_bound(lambda: _webhook(f"http://127.0.0.1:{dripper.port}/hook").send(NOTICE))
    assert kind == "raised" and type(error) is DeliveryFailed and len(dripper.received) == 1
    assert error.detail == "ReadTimeout: no answer within 1 s"


def test_a_slack_receiver_that_drips_its_headers_leaves_the_alert_sent_unconfirmed_and_the_job_goes_on(
        ledger, tmp_path, monkeypatch):
    with Dripper(*HEADERS_WITHOUT_END, until=b"}") as dripper:
        monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{dripper.port}/hook")
        settings = settings_for(ledger.url, tmp_path, ChannelConfig("finance-slack", "slack", url_env="SLACK_URL", timeout=1.0))
        insert_records(ledger, [make_call(NOW - timedelta(hours=1), 9, project="search")])
        kind, run = _within_bound(lambda: _deliver_at(ledger, settings, 0))
        assert kind == "returned" and (run.delivered, run.unconfirmed) == (1, 1) and len(dripper.received) == 1
        assert _deliver_at(ledger, settings, 31).sent == ()  # not posted a second time
    delivery, attempts = _attempts(ledger)
    assert delivery.status == "delivered" and attempts == [
        ("unconfirmed", "sent, unconfirmed (ReadTimeout: no answer within 1 s); not sent again: the receiver cannot tell a repeat")]


def test_an_smtp_server_that_drips_its_greeting_a_line_at_a_time_is_cut_at_the_deadline():
    with Dripper(b"", b"220-still greeting\r\n") as dripper:  # a continued line every 0.1 s, never the last
        sender = sender_for(ChannelConfig("mail", "email", host="127.0.0.1", port=dripper.port, security="none",
                                          sender="a@b.c", to=("d@e.f",), timeout=1.0))
        kind, error = _within_bound(lambda: sender.send(NOTICE))
    assert kind == "raised" and type(error) is DeliveryFailed
    assert error.detail == "Timeout: the SMTP exchange took past 1 s"

