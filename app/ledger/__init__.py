"""The double-entry ledger: accounts, transfers, balances, the ball-state predicate and the check.

The bottom domain layer: ``energy``, ``game`` and ``planting`` book every movement of energy through
it, and it imports nothing above ``core``."""
