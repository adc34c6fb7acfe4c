"""credit-ledger: usage and cost accounting for the AI Video API's prepaid credits.

The public names, imported on first use (so that `credit-ledger --version`
does not load the HTTP and database stacks):

    from ledger import Recorder
    rec = Recorder("sqlite:///ledger.db")
    client = OpenAI(base_url=URL, api_key=KEY, http_client=rec.client())
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (never a submodule's own name: importing
# the submodule would rebind it)
_EXPORTS = {
    "Recorder": "ledger.record.recorder",
    "Ledger": "ledger.store.engine",
    "LedgerSink": "ledger.sink.sink",
    "replay_journal": "ledger.sink.writer",
    "load_settings": "ledger.config",
    "Settings": "ledger.config",
    "price": "ledger.accounting.pricing",
    "PricingPolicy": "ledger.accounting.pricing",
    "default_rate_book": "ledger.accounting.pricing",
    "load_rate_cards": "ledger.accounting.pricing",
    "load_rate_book": "ledger.accounting.pricing",
    "LedgerError": "ledger.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and editors
    from .accounting.pricing import PricingPolicy, default_rate_book, load_rate_book, load_rate_cards, price
    from .config import Settings, load_settings
    from .errors import LedgerError
    from .record.recorder import Recorder
    from .sink.sink import LedgerSink
    from .sink.writer import replay_journal
    from .store.engine import Ledger
