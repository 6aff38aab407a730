"""``revenue_entries`` and its views ``revenue_daily`` / ``revenue_by_challenge`` (rules §5).

Forfeits and fees from settled challenges; dispute losses (negative) from write-offs, with no
challenge; and recoveries when tokens come back to a lot whose loss was booked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

import psycopg

from domain.challenge import Challenge
from domain.wallet import Wallet
from projections.base import Positioned, by_class, copy_rows

RETURNING = (
    Wallet.HoldsReturned,
    Wallet.StakeSettled,
    Wallet.LotRefundRefused,
    Wallet.RefundFailed,
    Wallet.WriteOffReversed,  # a reversed external refund repays the lot's loss first
)
COLUMNS = ("position", "line", "kind", "challenge_id", "tokens", "day", "event_time")
# The only event classes that can make revenue lines; every other event is skipped at once.
EARNING: dict[type[Any], bool | None] = {
    Challenge.Settled: True,
    Wallet.LotWrittenOff: True,
    **dict.fromkeys(RETURNING, True),
}


class RevenueProjection:
    name = "revenue"
    tables = ("revenue_entries",)

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        copy_rows(cur, "revenue_entries", COLUMNS, list(_entries(events)))


def _entries(events: Iterable[Positioned]) -> Iterable[tuple[Any, ...]]:
    for p in events:
        e = p.event
        if not by_class(EARNING, type(e)):
            continue
        lines: list[tuple[str, Any, int]] = []
        if isinstance(e, Challenge.Settled):
            if not any(r[3] for r in e.results):
                lines.append(("forfeit", p.originator_id, e.forfeited))
            elif e.fee:
                lines.append(("fee", p.originator_id, e.fee))
        elif isinstance(e, Wallet.LotWrittenOff) and e.loss:
            lines.append(("dispute_loss", None, -e.loss))
        if isinstance(e, RETURNING):
            for _lot, _refilled, recovered, _frozen in e.returned:
                if recovered:
                    lines.append(("dispute_recovery", None, recovered))
        if not lines:
            continue
        day = p.at.astimezone(UTC).date()
        for line, (kind, challenge_id, tokens) in enumerate(lines):
            yield (p.position, line, kind, challenge_id, tokens, day, p.at)
