"""Who finishes a challenge and how its pool is divided (rules §5).

Plain functions over plain values, so the arithmetic is tested without any aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID


def finishes(expected: int, accepted: int, grace: int) -> bool:
    """A participant finishes when it missed no more slots than the grace allows."""
    return accepted >= max(0, expected - grace)


@dataclass(frozen=True)
class Split:
    """How a pool is divided: the platform's part and each finisher's share."""

    pool: int
    fee: int
    forfeited: int
    shares: dict[UUID, int]


def split_pool(pool: int, fee_bps: int, finishers: Iterable[UUID]) -> Split:
    """Divide ``pool`` among ``finishers``; nobody finishing forfeits it all to revenue.

    ``share = (pool − fee) // n``; the remainder goes one token each to the finishers in
    ascending user-id order, UUIDs compared as 128-bit integers.
    """
    ordered = sorted(set(finishers), key=lambda user: user.int)
    if not ordered:
        return Split(pool=pool, fee=0, forfeited=pool, shares={})
    fee = pool * fee_bps // 10_000
    share, remainder = divmod(pool - fee, len(ordered))
    shares = {user: share + (1 if i < remainder else 0) for i, user in enumerate(ordered)}
    return Split(pool=pool, fee=fee, forfeited=0, shares=shares)
