"""Two checkouts of credit-ledger, one benchmark script, run alternately in one run: is a change's speed unchanged?

Each checkout runs its own copy of the script with its own code (its own
venv when it has one at DIR/.venv, else this interpreter with DIR first on the
path), in the order A B B A ..., so that the host's drift touches both alike.
The lines each run prints that match --keep are shown side by side, by run.

    git worktree add /tmp/before 165316b        # the code before the change
    .venv/bin/python benchmarks/bench_trees.py /tmp/before . bench_recorder.py --rounds 3 -- --stream-mb 10
    .venv/bin/python benchmarks/bench_trees.py /tmp/before . bench_writer.py --rounds 2 --keep 'records/s'
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def python_of(tree: Path) -> str:
    own = tree / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def run_once(tree: Path, script: str, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    done = subprocess.run([python_of(tree), str(tree / "benchmarks" / script), *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"{tree}: {script} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return time.monotonic() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("script", help="a file name in benchmarks/ of both trees")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of A B B A")
    parser.add_argument("--keep", default=r"ratio|records/s|x the|µs|us a", help="regex of the output lines to show")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:split])
    options.args = argv[split + 1:]  # the script's own arguments, after --
    keep = re.compile(options.keep)
    trees = {"before": options.before.resolve(), "after": options.after.resolve()}
    for tree in trees.values():
        if not (tree / "benchmarks" / options.script).exists():
            parser.error(f"{tree} has no benchmarks/{options.script}")
    order = []
    for _ in range(options.rounds):
        order += ["before", "after", "after", "before"]
    for n, side in enumerate(order, 1):
        seconds, out = run_once(trees[side], options.script, options.args)
        print(f"--- run {n}: {side} ({trees[side]}), {seconds:.0f} s", flush=True)
        for line in out.splitlines():
            if keep.search(line):
                print(f"    {line.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
