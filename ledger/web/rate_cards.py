"""Rate cards (`/rate-cards`): every dated card, its rates a model, and which card is in force when.

The cards are those the ledger holds (each that priced a call, as it was) and
those the config's rate-card file and the built-in card give now; a card is in
force from its `effective_from` until the next one's, as pricing picks them
(`RateBook.card_at`).
"""

from __future__ import annotations

from starlette.routing import Route

from ..accounting.pricing import RateBook, load_rate_book
from ..errors import LedgerError
from ..money import fmt
from ..store.rate_cards import rate_cards_in_ledger
from . import figures, params
from .gate import guarded
from .rendering import render


@guarded()
def rate_cards(request):
    params.only(request, ("tz",))
    settings = request.app.state.settings
    zone = params.zone(request, settings.timezone)
    now = figures.utc_now()
    problem = None
    try:
        configured = {card.name: card for card in load_rate_book(settings.rate_cards_path).cards}
    except LedgerError as error:  # a bad file: the ledger's own cards still show
        problem, configured = str(error), {}
    with request.app.state.ledger.session() as session:
        held = rate_cards_in_ledger(session)
    cards = RateBook(tuple(sorted({**configured, **held}.values(), key=lambda c: (c.effective_from, c.name))))
    spans = []
    for index, card in enumerate(cards.cards):
        until = cards.cards[index + 1].effective_from if index + 1 < len(cards.cards) else None
        spans.append((card, until, card.name in held, card.name in configured))
    current = cards.card_at(now).name if cards.cards else None
    return render(request, "rate_cards.html", zone=zone, as_of=now, spans=spans, current=current, problem=problem,
                  fmt=fmt)


routes = [Route("/rate-cards", rate_cards, name="rate-cards")]
