"""``audit balance``: a wallet's balances and lots as they were, from the stream alone.

``--as-of`` is a stream position, or a time: the stream up to the last position whose event
time is at most that time (rules §8). The time becomes a position through the
``position_times`` index, the very lookup the API's ``?as_of=`` makes, so both answer the same;
the wallet is then replayed from its events in the stream, never read from a read model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

from adapters.persistence import DatabaseSettings
from application.ledger import Ledger
from projections.audit.export import plain
from projections.audit.stream import snapshot
from projections.point_in_time import wallet_as_of
from projections.position_times import position_at

LOT_FIELDS = ("seq", "source", "amount", "remaining", "frozen", "written_off", "loss")


def parse_as_of(text: str) -> int | datetime:
    """A position (digits) or an ISO 8601 time with its offset (``Z`` allowed)."""
    if text.isdigit():
        return int(text)
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.utcoffset() is None:
        raise ValueError("give the time with its UTC offset, e.g. 2026-03-01T12:00:00+00:00")
    return at


def balance(
    db: DatabaseSettings,
    ledger: Ledger,
    as_of: int | datetime,
    *,
    user_id: UUID | None = None,
    wallet_id: UUID | None = None,
) -> dict[str, Any]:
    at = None
    if isinstance(as_of, datetime):
        at = as_of
        with snapshot(db) as conn:
            as_of = position_at(conn, at)
    state = wallet_as_of(ledger, user_id, wallet_id=wallet_id, position=as_of)
    w = state.wallet
    return {
        "wallet_id": str(w.id),
        "user_id": str(w.user_id),
        "as_of": {"position": as_of, "time": plain(at)},
        "last_wallet_event": state.position,
        "balances": state.balances,
        "lots": [
            {"lot_id": str(lot.lot_id), **{k: getattr(lot, k) for k in LOT_FIELDS}}
            for lot in state.lots
        ],
    }


def write_text(report: dict[str, Any], out: TextIO) -> None:
    w = out.write
    as_of = report["as_of"]
    when = f" (time {as_of['time']})" if as_of["time"] else ""
    w(f"wallet {report['wallet_id']} of user {report['user_id']}\n")
    w(f"as of position {as_of['position']:,}{when}; its last event then: ")
    w(f"{report['last_wallet_event']:,}\n")
    for name, value in report["balances"].items():
        w(f"  {name:<20}{value:>14,}\n")
    w(f"lots ({len(report['lots'])})\n")
    w(f"  {'seq':>4} {'source':<11}{'amount':>10}{'remaining':>11}{'loss':>8}  flags\n")
    for lot in report["lots"]:
        flags = " ".join(f for f in ("frozen", "written_off") if lot[f])
        w(
            f"  {lot['seq']:>4} {lot['source']:<11}{lot['amount']:>10,}{lot['remaining']:>11,}"
            f"{lot['loss']:>8,}  {flags}\n"
        )
