"""Rows each rollup read of the month 2026-10 (Asia/Kolkata) by project and by user touches, per table and sign (a
tree's `rollup_parts`, each part's rows counted with its own WHERE), beside the raw calls:

    .venv/bin/python benchmarks/rollup_read_rows.py TREE URL      # URL: sqlite:///... or postgresql+psycopg://...
"""
import sys
tree, url = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
from collections import Counter
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from ledger.accounting.periods import parse_period
from ledger.accounting.group_keys import parse_group_keys
from ledger.reports.spend import selection_for
from ledger.store import spend
from ledger.store.models import Call

engine = create_engine(url)
period = parse_period("2026-10", "Asia/Kolkata")
with Session(engine) as session:
    selection, _, _ = selection_for(session, period, None, [])
    for name in ("project", "user"):
        keys = parse_group_keys(name)
        needed = spend.needed_dims(keys, None, None)
        pieces = spend.selection_ends(selection, {}, needed) if hasattr(spend, "selection_ends") else [(selection, 1)]
        rows = Counter()
        for part, sign in pieces:
            rolled, raw = spend.rollup_parts(part, {}, needed)
            for model, extra, part_sign, whole in rolled:
                query = select(func.count()).select_from(model).where(spend.where(part, model, whole))
                if extra is not None:
                    query = query.where(extra)
                rows[f"{model.__tablename__} ({'+' if sign * part_sign > 0 else '-'})"] += session.scalar(query)
            if raw is not None:
                rows["calls (raw edges)"] += session.scalar(select(func.count()).select_from(Call).where(spend.where(part, Call), raw))
        raw_rows = session.scalar(select(func.count()).select_from(Call).where(spend.where(selection, Call)))
        print(f"by {name}: {sum(rows.values()):,} rollup rows beside {raw_rows:,} calls; " +
              ", ".join(f"{k} {v:,}" for k, v in sorted(rows.items())))
