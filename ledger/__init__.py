"""credit-ledger: usage and cost accounting for the AI Video API's prepaid credits."""

__version__ = "0.1.0"
