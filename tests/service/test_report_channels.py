"""A [[reports]] entry that names channels: email attaches the files, Slack and a signed webhook get the summary
and the paths; once per entry and period, whichever replica runs it, retried when a channel is down."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from ledger_rows import call_values, insert
from receivers import Receiver, free_port
from standardwebhooks import Webhook

from ledger.config import settings_from_mapping
from ledger.errors import ConfigError
from ledger.service import closing
from ledger.service.alerting import notify
from ledger.service.jobs import Service, default_jobs, run_job
from ledger.service.report_jobs import run_scheduled_report
from ledger.store.alerts import alert_history

BERLIN_DEC_1 = datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)  # 06:00 in Berlin
SECRET = "whsec_" + base64.b64encode(b"a report secret, 24 byte").decode()


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch):
    monkeypatch.setattr(closing, "SETTLE_SECONDS", 0.0)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


def settings_for(url, folder, smtp_port, **entry):
    return settings_from_mapping({
        "database_url": url, "timezone": "Europe/Berlin", "secret": str(folder / "secret"),
        "reports": [{"name": "finance-monthly", "formats": ["xlsx", "csv"], "by": ["project"], "close": True,
                     "output_dir": str(folder), "channels": ["mail", "hook", "slack"], **entry}],
        "channels": [
            {"name": "mail", "kind": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
             "from": "ledger@example.com", "to": ["finance@example.com"]},
            {"name": "hook", "kind": "webhook", "url_env": "REPORT_HOOK_URL", "secret_env": "REPORT_HOOK_SECRET"},
            {"name": "slack", "kind": "slack", "url_env": "REPORT_SLACK_URL"},
        ],
    })


def test_a_scheduled_report_reaches_each_channel_once_email_with_its_files(ledger, tmp_path, monkeypatch):
    insert(ledger, [call_values(started_at=datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=d), charged="2.5",
                                project="search" if d % 2 else "=HYPERLINK(\"http://x\",\"y\")") for d in range(30)])
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with Receiver(failures=1) as hook, Receiver() as slack:
            monkeypatch.setenv("REPORT_HOOK_URL", hook.url)
            monkeypatch.setenv("REPORT_HOOK_SECRET", SECRET)
            monkeypatch.setenv("REPORT_SLACK_URL", slack.url)
            settings = settings_for(ledger.url, tmp_path, port)
            assert "budgets" in default_jobs(settings)  # the job that retries a channel that was down
            entry = settings.reports[0]
            results = []

            def job(service):
                results.append(run_scheduled_report(service, entry, now=BERLIN_DEC_1))
                return results[-1].outcome, results[-1].detail

            assert run_job(Service(settings, ledger, host="replica-1"), entry.job_name, job) == "ok"
            # A second replica (or a restart) runs the same period: nothing written or sent again.
            assert run_job(Service(settings, ledger, host="replica-2"), entry.job_name, job) == "ok"
            result, again = results
            assert again.written_by is not None and again.paths == ()
            # The webhook failed its first request (retried 30 s later); the service's next rounds deliver it, once.
            later = lambda: datetime.now(timezone.utc) + timedelta(minutes=1)  # noqa: E731
            for _ in range(3):
                notify(ledger, settings, host="replica-1", clock=later)
            assert len(hook.requests) == 2 and len(hook.accepted) == 1 and len(slack.accepted) == 1
            (hook_headers, hook_body), ((_, slack_body),) = hook.accepted[0], slack.accepted
    finally:
        controller.stop()

    xlsx, csv = sorted(result.paths, key=lambda p: p.suffix, reverse=True)
    ((content,),) = [inbox.messages]
    message = email.message_from_string(content, policy=email.policy.default)
    assert message["Subject"] == "[credit-ledger] Report finance-monthly for 2026-11"
    body = message.get_body(("plain",)).get_content()
    assert "30 calls, 75.00 credits charged" in body and "closed by this run" in body
    attached = {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}
    assert attached == {xlsx.name: xlsx.read_bytes(), csv.name: csv.read_bytes()}  # the files as written

    payload = Webhook(SECRET).verify(hook_body, hook_headers)
    assert payload["type"] == "report.written"
    data = payload["data"]
    assert data["calls"] == 30 and data["credits_charged"] == "75" and data["period"]["label"] == "2026-11"
    assert sorted(data["files"]) == sorted(str(p) for p in result.paths)

    text = json.loads(slack_body)["text"]
    assert text.startswith("*Report finance-monthly for 2026-11*\n")
    assert "30 calls" in text and str(xlsx) in text

    with ledger.session() as session:
        ((alert, deliveries),) = alert_history(session)
    assert alert.alert_key == "report:finance-monthly:2026-11" and alert.raised_by == "replica-1"
    assert sorted((d.channel, d.status, d.attempts) for d, _ in deliveries) == [
        ("hook", "delivered", 2), ("mail", "delivered", 1), ("slack", "delivered", 1)]


def test_a_report_naming_an_undefined_channel_is_one_config_line(tmp_path):
    with pytest.raises(ConfigError, match="report 'finance-monthly': channel 'pager' is not defined in \\[\\[channels\\]\\]"):
        settings_for("sqlite:///x.db", tmp_path, 25, channels=["pager"])
