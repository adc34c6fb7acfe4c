"""The `rate_cards` table: every card that ever priced a call, as it was in force."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from ..accounting.pricing import ModelRate, RateBook, RateCard
from .engine import insert_for
from .models import RateCardRow, as_utc
from .spend import cards_in_force, usd_per_credit


def sync_rate_cards(session: Session, book: RateBook) -> None:
    """Keep every card that ever priced a call; a card's rates never change under its name."""
    now = datetime.now(timezone.utc)
    rows = [
        {
            "name": card.name,
            "effective_from": card.effective_from,
            "model": model,
            "endpoint": rate.endpoint,
            "input_per_million": rate.input_per_million,
            "output_per_million": rate.output_per_million,
            "usd_per_credit": card.usd_per_credit,
            "loaded_at": now,
        }
        for card in book.cards
        for model, rate in card.rates.items()
    ]
    session.execute(insert_for(session, RateCardRow.__table__).on_conflict_do_nothing(index_elements=["name", "model"]), rows)


def rate_cards_in_ledger(session: Session) -> dict[str, RateCard]:
    """Every card the ledger holds, by name, as it priced calls (its models' rates and its US dollar rate)."""
    dollars = usd_per_credit(session)
    rows: dict[str, list[RateCardRow]] = {}
    for row in cards_in_force(session):
        rows.setdefault(row.name, []).append(row)
    return {
        name: RateCard(name, as_utc(found[0].effective_from), dollars[name], {
            r.model: ModelRate(r.input_per_million, r.output_per_million, r.endpoint) for r in found})
        for name, found in rows.items()
    }
