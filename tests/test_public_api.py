"""The package's public names: each one importable, and none left out of __all__."""

import importlib
import subprocess
import sys

import ledger


def test_every_public_name_resolves_to_its_definition():
    import ledger.accounting.reconcile  # noqa: F401  (a submodule imported first must not shadow a name)

    for name in ledger.__all__:
        value = getattr(ledger, name)
        if name != "__version__":
            assert getattr(importlib.import_module(ledger._EXPORTS[name]), name) is value


def test_no_public_name_is_also_a_submodule():
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(ledger.__path__)}
    assert not submodules & set(ledger.__all__)


def test_the_readme_import_works_and_unknown_names_fail():
    from ledger import Recorder

    assert Recorder.__module__ == "ledger.record.recorder"
    try:
        ledger.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_version_does_not_load_the_heavy_stacks():
    code = "import sys, ledger.cli; print(any(m in sys.modules for m in ('sqlalchemy', 'openai', 'httpx2')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
