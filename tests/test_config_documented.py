"""The README's Configuration section names every setting the loader takes, and none it refuses."""

import re
import tomllib
from decimal import Decimal
from pathlib import Path

from ledger.config import accepted_settings, settings_from_mapping

README = Path(__file__).resolve().parents[1] / "README.md"


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Configuration\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def documented_settings() -> dict[str, set[str]]:
    """The table's rows: section (`[pricing]` -> pricing, `[[accounts]]` keys -> accounts.keys, top level -> "") -> names."""
    found: dict[str, set[str]] = {}
    for line in configuration_section().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("section", "---"):
            continue
        label = re.sub(r"[`\[\]]", "", cells[0])
        section = "" if label == "top level" else label.replace(" ", ".")
        found[section] = set(re.findall(r"`([a-z_]+)`", cells[1]))
    return found


def named_only_in(first: dict, second: dict) -> list[str]:
    return [f"{section or 'top level'}: {name}" for section, names in first.items()
            for name in sorted(set(names) - set(second.get(section, ())))]


def test_every_setting_the_loader_takes_is_in_the_readme_configuration_section():
    missing = named_only_in(accepted_settings(), documented_settings())
    assert not missing, "settings the README's Configuration table does not name: " + ", ".join(missing)


def test_the_readme_names_no_setting_the_loader_refuses():
    extra = named_only_in(documented_settings(), accepted_settings())
    assert not extra, "the README's Configuration table names settings the loader refuses: " + ", ".join(extra)


def test_the_configuration_sections_example_file_loads():
    blocks = re.findall(r"```toml\n(.*?)```", configuration_section(), re.DOTALL)
    assert blocks
    settings = settings_from_mapping(tomllib.loads(blocks[0], parse_float=Decimal), "README")
    assert settings.timezone == "Europe/Berlin" and settings.accounts[0].name == "prod"
