"""The command line: every command's output and exit code, and bad input as one clear line, nothing written."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from ledger.cli import EXIT_NOTHING, main


def run(args, cwd, env=None):
    """The real entry point in a process of its own."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CREDIT_LEDGER_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def call(args, capsys) -> tuple[int, str, str]:
    """main() in this process: (exit code, stdout, stderr); argparse's exit is an exit code like any other."""
    out = io.StringIO()
    try:
        code = main(args, out=out)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


BAD_CONFIGS = {
    "nan seconds": ("[schedule]\npoll_credits_seconds = nan\n", "schedule.poll_credits_seconds"),
    "inf seconds": ("[schedule]\nreplay_journal_seconds = inf\n", "schedule.replay_journal_seconds"),
    "nan settle": ("[schedule]\nreconcile_settle_seconds = nan\n", "schedule.reconcile_settle_seconds"),
    "huge precision": ("[pricing]\ncharge_precision = 1e999999999\n", "pricing.charge_precision"),
    "text precision": ("[pricing]\ncharge_precision = \"a cent\"\n", "pricing.charge_precision"),
    "rate cards a number": ("[pricing]\nrate_cards = 5\n", "pricing.rate_cards"),
    "key env a number": ('[[accounts]]\nname = "a"\nkeys = [{env = 5}]\n', "env"),
    "label a list": ('[[accounts]]\nname = "a"\nkeys = [{env = "K", label = [1]}]\n', "label"),
    "keys not a list": ('[[accounts]]\nname = "a"\nkeys = "K"\n', "keys: must be a list of tables"),
    "base url": ('[[accounts]]\nname = "a"\nbase_url = "ftp://x"\nkeys = [{env = "K"}]\n', "http:// or https://"),
    "zone": ('timezone = "Mars/Olympus"\n', "must be a known time zone"),
    "rounding": ('[reconcile]\nrounding = "up"\n', "reconcile.rounding"),
    "writer processes": ("[recorder]\nwriter_processes = 1.5\n", "writer_processes"),
    "unknown section": ("[budget]\nlimit = 5\n", "unknown setting 'budget'"),
    "not toml": ("[schedule\n", "not valid TOML"),
    "budget scope": ('[[budgets]]\nname = "b"\nscope = {team = "x"}\nperiod = "month"\nlimit = "5"\n', "team"),
    "budget zone": ('[[budgets]]\nname = "b"\nscope = {project = "x"}\nperiod = "month"\nlimit = "5"\n'
                    'timezone = "Europe/Atlantis"\n', "must be a known time zone"),
    "budget threshold": ('[[budgets]]\nname = "b"\nscope = {project = "x"}\nperiod = "month"\nlimit = "5"\n'
                         'thresholds = [150]\n', "150"),
    "channel undefined": ('[[budgets]]\nname = "b"\nscope = {project = "x"}\nperiod = "month"\nlimit = "5"\n'
                          'channels = ["pager"]\n', "channel 'pager' is not defined"),
    "report period": ('[[reports]]\nname = "r"\nperiod = "fortnight"\n', "period: must be one of"),
    # Values that ended in "unexpected error", or were taken though they cannot work.
    "nan timeout": ('[[channels]]\nname = "c"\nkind = "slack"\nurl_env = "U"\ntimeout = nan\n', "channel 'c' timeout: must be"),
    "nested 100,000 deep": ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nests arrays or tables too deep"),
    "a 5,000-digit number": ("[recorder]\nwriter_processes = " + "9" * 5000 + "\n", "holds a number too long"),
    "upstream with a space": ('[proxy]\nupstream = "http://exa mple.com/v1"\n', "proxy.upstream: must be a base URL without spaces"),
    "upstream with CR/LF": ('[proxy]\nupstream = "http://example.com/v1\\r\\nX-Injected: 1"\n', "proxy.upstream: must be"),
    "host with NUL": ('[proxy]\nhost = "localhost\\u0000"\n', "proxy.host: must be a host without control characters"),
    "project past its column": ('[[budgets]]\nname = "b"\nlimit = "5"\nscope = {project = "' + "p" * 201 + '"}\n',
                                "scope.project: must be a text of at most 200 characters"),
    "Arabic-Indic digit": ('[[budgets]]\nname = "b"\nlimit = "\u0663"\n', "limit: must be an amount in the digits 0-9"),
    "one tag twice": ('[[budgets]]\nname = "b"\nlimit = "5"\nscope = {tag = ["team=a", "team=b"]}\n',
                      "scope.tag: names the tag 'team' twice"),
    "account URL with a NUL": ('[[accounts]]\nname = "a"\nbase_url = "https://h\\u0000.example/v1"\nkeys = [{env = "K"}]\n',
                               "base_url: must be a base URL such as https://api.aivideoapi.ai/v1 without control characters"),
    "SMTP host with a space": ('[[channels]]\nname = "m"\nkind = "email"\nhost = "smtp example"\nfrom = "a@b"\nto = "c@d"\n',
                               "channel 'm' host: must be an IP address or a host name"),
    "journal with a NUL": ('journal = "j\\u0000"\n', "journal: must be a path without control characters"),
    "rolling period in Arabic-Indic digits": ('[[budgets]]\nname = "b"\nlimit = "5"\nperiod = "\u0663d"\n', "is not a period"),
    "report by a flag": ('[[reports]]\nname = "r"\nby = true\n', "by: must be group keys"),
    "cron in Arabic-Indic digits": ('[[reports]]\nname = "r"\nschedule = "\u0663 6 * * *"\n', "is not a number, range"),
}
EVERY_COMMAND = (["check"], ["calls"], ["replay"], ["balance"], ["reconcile"], ["run"], ["db", "upgrade"],
                 ["db", "current"], ["demo", "--calls", "1"], ["report"], ["close", "2026-11"],
                 ["reopen", "2026-11", "--reason", "x"], ["closes"], ["budgets"], ["budgets", "--notify"], ["alerts"],
                 ["alerts", "test", "--channel", "x"], ["proxy"], ["dashboard"], ["users", "list"], ["tokens", "list"])  # simulate reads no config: the simulator needs none


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
@pytest.mark.parametrize("config, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS)
def test_a_bad_config_stops_every_command_with_one_line(tmp_path, monkeypatch, capsys, command, config, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "credit-ledger.toml").write_text(config)
    code, out, err = call(command, capsys)
    assert (code, out) == (1, ""), err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["credit-ledger.toml"]  # nothing written


BAD_BASE_URLS = {
    "ftp": ("ftp://api.example.com/v1", "AIVIDEO_BASE_URL: must start with http:// or https://"),
    "credentials": ("https://sk-secret-123@api.example.com/v1", "AIVIDEO_BASE_URL: a base URL has no query, fragment or credentials"),
    "query": ("https://api.example.com/v1?key=1", "AIVIDEO_BASE_URL: a base URL has no query"),
    "space": ("https://api.example.com/v 1", "AIVIDEO_BASE_URL: must be a base URL without spaces"),
}


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
@pytest.mark.parametrize("value, message", BAD_BASE_URLS.values(), ids=BAD_BASE_URLS)
def test_a_bad_aivideo_base_url_of_the_default_account_stops_every_command_with_one_line(tmp_path, monkeypatch, capsys,
                                                                                        command, value, message):
    """The default account's $AIVIDEO_BASE_URL is checked as a configured account's base_url, before anything is written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIVIDEO_BASE_URL", value)
    code, out, err = call(command, capsys)
    assert (code, out) == (1, ""), err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "sk-secret-123" not in err  # what stands before an @ may be a secret: never printed
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nonsense"], 2, "invalid choice"),
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        ([], 2, "a command is required"),
        (["calls", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["db"], 2, "required"),
        (["check", "--since", "yesterday"], 2, "not a time"),
        (["calls", "--since", "1000000d"], 2, "time out of range"),
        (["calls", "--since", "99999999999d"], 2, "time out of range"),
        (["calls", "--since", "２４h"], 2, "not a time"),
        (["report", "--period", "２０２６-１１"], 2, "not a period"),
        (["close", "２０２６-１１"], 2, "not a period"),
        (["calls", "--since", "0001-01-01T00:00+01:00"], 2, "time out of range"),
        (["reconcile", "--from", "9999-12-31T23:00-05:00"], 2, "time out of range"),
        (["reconcile", "--from", "2026-12-01", "--to", "2026-11-01"], 2, "--from must come before --to"),
        (["calls", "--since", "2026-12-01", "--until", "2026-12-01"], 2, "--since must come before --until"),
        (["calls", "--format", "xml"], 2, "invalid choice"),
        (["calls", "--limit", "0"], 2, "must be above 0"),
        (["simulate", "--port", "99999"], 2, "port out of range"),
        (["simulate", "--port", "٨٠٨٠"], 2, "not a port number"),  # Arabic-Indic digits: int() reads them
        (["proxy", "--workers", "٢"], 2, "not a whole number"),
        (["calls", "--limit", "１０"], 2, "not a whole number"),
        (["demo", "--seed", "٧"], 2, "not a whole number"),
        (["simulate", "--port", " 8080"], 2, "not a port number"),
        (["proxy", "--host", "localhost\x00"], 2, "must be a host"),
        (["simulate", "--host", "local host"], 2, "must be an IP address or a host name"),
        (["demo", "--calls", "0"], 2, "must be above 0"),
        (["check"], 1, "no ledger at ledger.db"),
        (["reconcile"], 1, "no ledger at ledger.db"),
        (["--database-url", "mysql://x/y", "check"], 1, "unsupported database"),
        (["--database-url", "ledger.db", "check"], 1, "not a database URL"),
        (["--config", "missing.toml", "check"], 1, "config file not found"),
        (["replay"], 1, "no journal at credit-ledger.journal"),
        (["report", "--format", "csv", "--output", "missing/dir/r.csv"], 1, "no ledger at ledger.db"),  # more: tests/reports
        (["close"], 2, "required"),
        (["closes", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["budgets", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["alerts", "--since", "soon"], 2, "not a time"),
        (["alerts", "test"], 2, "--channel"),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit_and_nothing_written(tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(tmp_path)
    result, out, err = call(args, capsys)
    assert result == code, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_the_entry_point_gives_one_line_for_an_unreachable_database_and_an_argument_error(tmp_path):
    result = run(["--database-url", "postgresql://postgres@127.0.0.1:1/x", "db", "upgrade"], tmp_path)
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run(["calls", "--since", "99999999999d"], tmp_path)
    assert result.returncode == 2 and "time out of range" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_read_command_never_makes_a_ledger_of_a_file_that_is_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "text.db").write_text("not a database")
    for name, message in (("empty.db", "not a ledger"), ("text.db", "not a ledger")):
        for command in (["calls"], ["check"], ["reconcile"]):
            code, _, err = call(["--database-url", f"sqlite:///{tmp_path / name}", *command], capsys)
            assert code == 1 and message in err, err
    assert (tmp_path / "empty.db").read_bytes() == b"" and (tmp_path / "text.db").read_text() == "not a database"


def test_replay_refuses_a_journal_that_is_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "credit-ledger.journal").write_text("")
    code, _, err = call(["replay"], capsys)
    assert code == 1 and "is a file, not a journal directory" in err


def test_a_bad_rate_card_file_gets_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cards.toml").write_text("[[card]]\nname = 'x'\n")
    (tmp_path / "credit-ledger.toml").write_text('[pricing]\nrate_cards = "cards.toml"\n')
    for command in (["replay"], ["demo"], ["run"]):
        code, _, err = call(command, capsys)
        assert code == 1 and "effective_from" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards.toml", "credit-ledger.toml"]


def test_db_upgrade_current_check_calls_and_reconcile_on_an_empty_ledger(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    code, out, _ = call(["--database-url", url, "db", "upgrade"], capsys)
    assert code == 0 and "is at migration" in out
    code, out, _ = call(["--database-url", url, "db", "current"], capsys)
    assert code == 0 and out.split()[0] == out.split()[-1].rstrip(")")  # current is the newest
    code, out, _ = call(["--database-url", url, "check"], capsys)
    assert code == 0 and "every call was charged" in out
    code, out, _ = call(["--database-url", url, "calls", "--format", "csv"], capsys)
    assert code == 0 and out.startswith("call_id,started_at,status")
    code, out, _ = call(["--database-url", url, "calls"], capsys)
    assert code == 0 and out.rstrip().endswith("0 calls")
    code, out, _ = call(["--database-url", url, "calls", "--format", "json"], capsys)
    assert code == 0 and out.strip() == "[]"
    # A close gate never passes on nothing: no snapshots is a verdict and an exit code of its own.
    code, out, _ = call(["--database-url", url, "reconcile"], capsys)
    assert code == EXIT_NOTHING and out.rstrip().endswith("verdict: NOTHING TO RECONCILE")
    code, out, _ = call(["--database-url", url, "reconcile", "--json"], capsys)
    assert code == EXIT_NOTHING and '"verdict": "nothing to reconcile"' in out


HOSTILE = "\x1b[2J\x1b[31mOWNED"


def test_text_from_the_ledger_is_printable_on_a_terminal(tmp_path, monkeypatch, capsys):
    """A project or user holding escape sequences, a newline or BEL never reaches the terminal raw, nor breaks a table."""
    from ledger_rows import T0, call_values, insert

    from ledger.store.engine import Ledger

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with Ledger(url) as ledger:
        insert(ledger, [call_values(started_at=T0, project=HOSTILE, end_user="eve\nmallory\x07", pricing_class="overcharge",
                                    charged="9", expected="0.25088"),
                        call_values(started_at=T0, project="search")])
    window = ["--since", "2026-11-01", "--until", "2026-12-01"]
    for command in (["calls", *window], ["report", "--period", "2026-11", "--by", "project,user"]):
        code, out, err = call(["--database-url", url, *command], capsys)
        assert code in (0, 1), err
        assert not any(ch in out for ch in "\x1b\x07"), (command, out)
        assert "OWNED" in out  # shown, escaped
        # Each call's row stays one line: the user's newline is shown, not obeyed.
        (row,) = [line for line in out.splitlines() if "OWNED" in line]
        assert "mallory" not in out or ("eve" in row and "mallory" in row), (command, out)


LEDGER_COMMANDS = (["check"], ["calls"], ["reconcile"], ["db", "upgrade"], ["db", "current"], ["report"],
                   ["report", "--format", "xlsx"], ["close", "2026-11"], ["reopen", "2026-11", "--reason", "x"],
                   ["closes"], ["budgets"], ["budgets", "--notify"], ["alerts"])


@pytest.mark.parametrize("lock", ["PRAGMA locking_mode=NORMAL", "PRAGMA locking_mode=EXCLUSIVE"], ids=["writer", "sole"])
def test_a_locked_ledger_is_one_line_naming_the_file_for_every_command(tmp_path, monkeypatch, capsys, lock):
    """Another process holds the SQLite file (a writer's transaction, or a reader shut out too): each command says so."""
    import sqlite3

    from ledger.store import engine

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 50)  # the waits before giving up: 30 s and 15 s in use
    monkeypatch.setattr(engine, "SCHEMA_WAIT_SECONDS", 0.1)
    assert call(["db", "upgrade"], capsys)[0] == 0
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    holder.execute(lock)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE held (x)")
    try:
        for command in LEDGER_COMMANDS:
            code, out, err = call(command, capsys)
            if lock.endswith("NORMAL") and command != ["close", "2026-11"]:
                continue  # WAL: a reader (a report, too) goes on reading beside a writer
            assert code == 1, (command, out, err)
            assert err.startswith("credit-ledger: ") and len(err.strip().splitlines()) == 1, (command, err)
            assert "ledger.db" in err and "locked" in err and "SELECT" not in err and "INSERT" not in err, (command, err)
    finally:
        holder.close()
