"""The command line: one clear line and a non-zero exit on bad input, nothing written."""

import os
import subprocess
import sys

import pytest

from ledger.cli import main


def run(args, cwd, env=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CREDIT_LEDGER_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nonsense"], 2, "invalid choice"),
        (["check", "--since", "yesterday"], 2, "not a time"),
        (["calls", "--format", "xml"], 2, "invalid choice"),
        (["simulate", "--port", "99999"], 2, "port out of range"),
        (["demo", "--calls", "0"], 2, "must be above 0"),
        (["check"], 1, "no ledger at ledger.db"),
        (["--database-url", "mysql://x/y", "check"], 1, "unsupported database"),
        (["--config", "missing.toml", "check"], 1, "config file not found"),
        (["--database-url", "postgresql://postgres@127.0.0.1:1/x", "db", "upgrade"], 1, "cannot reach"),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit_and_nothing_written(tmp_path, args, code, message):
    result = run(args, tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_rate_card_file_gets_one_line(tmp_path):
    (tmp_path / "cards.toml").write_text("[[card]]\nname = 'x'\n")
    (tmp_path / "credit-ledger.toml").write_text('[pricing]\nrate_cards = "cards.toml"\n')
    result = run(["replay"], tmp_path)
    assert result.returncode == 1
    assert "effective_from" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards.toml", "credit-ledger.toml"]


def test_db_upgrade_then_empty_check_and_calls(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert main(["--database-url", url, "db", "upgrade"]) == 0
    assert main(["--database-url", url, "check"]) == 0
    assert "every call was charged" in capsys.readouterr().out
    assert main(["--database-url", url, "calls", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("call_id,started_at,status")
