"""The names of a wallet's figures (rules §2), defined once for every view of them.

The aggregate, the ``wallet_balances`` read model, the point-in-time view, the HTTP answer
and the audit all use these names; each view takes the group it shows.
"""

from __future__ import annotations

from typing import Any

BALANCES = ("available", "frozen", "staked", "withdrawal_pending", "cashout_pending")
"""What the wallet holds now, by state."""

LIFETIME_TOTALS = (
    "deposited",
    "refunded",
    "cashed_out",
    "won",
    "forfeited",
    "penalised",
    "written_off",
)
"""What has ever happened to the wallet's tokens (refunded and cashed out net of reversals)."""

SHOWN = BALANCES + LIFETIME_TOTALS
"""The figures a user sees for their wallet."""

BOOKKEEPING = ("adjusted_in", "adjusted_out", "unclaimed")
"""Figures kept for the books: admins' adjustments, and what an erased owner left."""

FIGURES = SHOWN + BOOKKEEPING
"""Every figure the ``wallet_balances`` read model keeps, in its column order."""


def figures(wallet: Any, names: tuple[str, ...] = FIGURES) -> dict[str, int]:
    """The named figures of a wallet (the aggregate or anything with those attributes)."""
    return {name: getattr(wallet, name) for name in names}
