"""The FOCUS file checked by the FinOps Foundation's own validator (PyPI `focus-validator`), not run in CI.

A ledger is made by the demo (the real recorder against the simulated
platform: faults, two keys, a top-up between two polls), its FOCUS file for
the day is written, and `focus-validator` checks it against FOCUS 1.2 with
the applicability criteria this provider meets. Each failure is printed;
the ones known to be the validator's own are printed with the reason, and
the exit status is 1 if any other remains. The validator needs Python 3.12:

    python3.12 -m venv /tmp/focusval && /tmp/focusval/bin/pip install focus-validator==2.2.1
    .venv/bin/python benchmarks/focus_validate.py --validator-python /tmp/focusval/bin/python [--calls 120] [--file F]

`--file F` checks a FOCUS file already written instead of making one.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

# What this provider does (FOCUS 1.2's applicability criteria); the others (zones, regions, commitments,
# reservations, negotiated prices, provisioned resources, resource types) it does not.
CRITERIA = (
    "ACCOUNT_NAMING_SUPPORTED", "PUBLIC_PRICE_LIST_SUPPORTED", "USAGE_MEASUREMENT_SUPPORTED", "UNIT_PRICING_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED", "PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED", "VIRTUAL_CURRENCY_SUPPORTED",
    "TAGGING_SUPPORTED",
)
# Failures that are the validator's, not the file's (BENCHMARKS.md, "FOCUS validator").
VALIDATORS_OWN = {
    "PricingCurrency-C-003-M": "FOCUS 1.2 CurrencyFormat allows a virtual currency (CREDITS) in PricingCurrency when "
                               "the provider prices in one; the validator accepts ISO 4217 codes only",
    "PricingCurrency-C-000-C": "the parent of PricingCurrency-C-003-M",
    "InvoiceId-C-005-C": "checked without its condition ('when the charge is associated with an invoice'): every "
                         "null fails, while InvoiceId-C-004-C, also without its condition, requires every value null",
    "ConsumedQuantity-C-006-C": "its parent's condition reads CommitmentDiscountStatus, a column FOCUS asks only of "
                                "providers with commitment discounts: absent, the check fails with no row in fault "
                                "(the same file with an empty CommitmentDiscountStatus column passes)",
    "ConsumedQuantity-C-005-C": "the parent of ConsumedQuantity-C-006-C",
    "ConsumedQuantity-C-004-C": "fails only as a dependant of ConsumedQuantity-C-005-C",
    "ConsumedQuantity-C-003-C": "the parent of ConsumedQuantity-C-004-C and -005-C",
    "ConsumedQuantity-C-000-C": "the parent of ConsumedQuantity-C-003-C",
}


def make_focus_file(folder: Path, calls: int) -> Path:
    """A demo ledger in `folder` and its FOCUS file for today (UTC)."""
    from ledger.cli import main

    os.chdir(folder)
    log = io.StringIO()
    if main(["demo", "--calls", str(calls)], out=log) != 0:
        sys.exit("the demo failed:\n" + log.getvalue())
    path = folder / "focus.csv"
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    if main(["report", "--period", day, "--format", "focus", "--output", str(path)], out=log) != 0:
        sys.exit("the FOCUS report failed:\n" + log.getvalue())
    return path


def validate(python: str, path: Path, folder: Path) -> str:
    """The validator's console report. It reads its currency list from a path relative to the working folder and
    writes its log there: it runs in `folder`, beside a link to its package."""
    package = subprocess.run([python, "-c", "import focus_validator, os; print(os.path.dirname(focus_validator.__file__))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    link = folder / "focus_validator"
    if not link.exists():
        link.symlink_to(package)
    done = subprocess.run(
        [python, "-m", "focus_validator.main", "--data-file", str(path), "--validate-version", "1.2", "--block-download",
         "--applicability-criteria", ",".join(CRITERIA)],
        cwd=folder, capture_output=True, text=True,
    )
    if "Total:" not in done.stdout:
        sys.exit(f"the validator did not run:\n{done.stdout}{done.stderr}")
    return done.stdout


def failures(report: str) -> list[tuple[str, str]]:
    return re.findall(r"^❌ (\S+): FAIL\s+\((.*)\)$", report, re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validator-python", required=True, help="the Python that has focus-validator installed")
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--file", type=Path, help="a FOCUS file to check instead of a demo's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="focus-validate-") as temporary:
        folder = Path(temporary)
        path = args.file.resolve() if args.file else make_focus_file(folder, args.calls)
        rows = sum(1 for _ in open(path, encoding="utf-8")) - 1
        report = validate(args.validator_python, path, folder)
    total = re.search(r"Total: .*", report).group()
    print(f"focus-validator, FOCUS 1.2, {rows} rows; criteria: {', '.join(CRITERIA)}")
    print(total)
    unexplained = 0
    for rule, detail in failures(report):
        why = VALIDATORS_OWN.get(rule)
        unexplained += why is None
        print(f"  FAIL {rule}: " + (f"the validator's: {why}" if why else detail))
    print("every failure is the validator's" if not unexplained else f"{unexplained} failures are the file's")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
