"""The `rate_cards` table: every card that ever priced a call, as it was in force."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from ..accounting.pricing import RateBook
from .engine import insert_for
from .models import RateCardRow


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
