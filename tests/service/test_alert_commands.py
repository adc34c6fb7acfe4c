"""The budgets and alerts commands: runway and top-up on the screen, the history with deliveries, a test message."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from receivers import Receiver
from standardwebhooks import Webhook

from ledger.accounting.snapshots import OK, BalanceSnapshotValue
from ledger.cli import main
from ledger.store.balances import insert_snapshot
from ledger.store.engine import Ledger

SECRET = "whsec_" + base64.b64encode(b"a test secret, 24 bytes!").decode()


def config(tmp_path) -> str:
    path = tmp_path / "credit-ledger.toml"
    path.write_text(f"""
secret = "{tmp_path / 'secret'}"

[[accounts]]
name = "prod"
keys = [{{env = "PROD_KEY", label = "backend"}}]

[[balance_alerts]]
account = "prod"
runway_days = 7
channels = ["oncall"]

[[channels]]
name = "oncall"
kind = "webhook"
url_env = "HOOK_URL"
secret_env = "HOOK_SECRET"
""")
    return str(path)


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def test_budgets_shows_burn_runway_and_the_top_up_and_alerts_shows_the_history(database_url, tmp_path, monkeypatch, capsys):
    path = config(tmp_path)
    now = datetime.now(timezone.utc)
    with Ledger(database_url) as ledger, ledger.session() as session:
        for day in range(8, -1, -1):  # 100 credits a day; 500 left now
            insert_snapshot(session, BalanceSnapshotValue("prod", now - timedelta(days=day, minutes=1), OK,
                                                          Decimal(500 + 100 * day), Decimal(1300), Decimal(800 - 100 * day)))
    base = ["--config", path, "--database-url", database_url]
    code, text = run([*base, "budgets"])
    assert code == 0
    (row,) = [line for line in text.splitlines() if line.startswith("prod ")]
    assert row.split()[:6] == ["prod", "500.00", "100.00", "5.0", "7", "200.00"]  # balance, burn, runway, wanted, top-up
    assert "▇" in row or "█" in row  # the last 7 days as a sparkline
    code, text = run([*base, "budgets", "--json"])
    (balance,) = json.loads(text)["balances"]
    assert (balance["burn_per_day"], balance["runway_days"], balance["top_up"]) == ("100", "5", "200")

    with Receiver(failures=1) as receiver:
        monkeypatch.setenv("HOOK_URL", receiver.url)
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        code, text = run([*base, "budgets", "--notify"])
        assert code == 0 and "raised: balance:prod:runway:1" in text and "FAILED (retried later), HTTP 500" in text
        code, text = run([*base, "alerts"])
        assert "balance:prod:runway:1" in text and "pending (HTTP 500), 1 attempt(s)" in text
        code, text = run([*base, "alerts", "--json"])
        (alert,) = json.loads(text)["alerts"]
        assert alert["message"].startswith("Balance of account prod runs out in 5.0 days")
        ((delivery),) = alert["deliveries"]
        assert delivery["status"] == "pending" and [a["detail"] for a in delivery["attempts"]] == ["HTTP 500"]

        # The test message goes through the same channel, signed.
        code, text = run([*base, "alerts", "test", "--channel", "oncall"])
        assert code == 0 and "test message sent, HTTP 200" in text
        headers, body = receiver.accepted[-1]
        assert Webhook(SECRET).verify(body, headers)["type"] == "test"
        code, _ = run([*base, "alerts", "test", "--channel", "nowhere"])
        assert code == 1 and "no channel named 'nowhere' (oncall)" in capsys.readouterr().err
    # The receiver is gone: the test message fails in one line, exit 1.
    code, _ = run([*base, "alerts", "test", "--channel", "oncall"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "did not take the test message: ConnectError" in err
    assert receiver.url not in err and SECRET not in err
    code, text = run([*base, "alerts", "--since", "1h"])
    assert "balance:prod:runway:1" in text
    code, text = run([*base, "alerts", "--since", (now + timedelta(hours=1)).isoformat()])
    assert text == "no alerts\n"
