"""``journal_entries`` and ``journal_postings``: the ledger in double entry (rules §8).

Every money event becomes one entry whose postings sum to zero; every token is in exactly
one account at a time. Accounts:

- ``user:{id}:available``, ``user:{id}:frozen``, ``user:{id}:withdrawal_pending``,
  ``user:{id}:cashout_pending``
- ``challenge:{id}:stake:{user_id}``, ``challenge:{id}:penalties``
- ``platform:revenue``, ``platform:dispute_losses``, ``platform:adjustments``,
  ``platform:unclaimed`` (tokens of erased users' wallets no refund returned; never revenue)
- ``stripe:clearing`` (tokens bought), ``stripe:refunds``, ``stripe:transfers``,
  ``stripe:disputes``

A settlement is posted in two steps: the challenge's ``Settled`` entry empties the stake and
penalty accounts into the finishers' ``available`` and ``platform:revenue``; each wallet's
``StakeSettled`` entry then moves what landed in frozen lots or repaid a dispute loss.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg

from domain.challenge import Challenge
from domain.wallet import Wallet
from projections.base import Positioned, by_class, copy_rows, fetch_by, with_topic_prefix
from projections.money_events import MONEY_EVENTS

W, C = Wallet, Challenge
ENTRY_COLUMNS = ("position", "event_type", "originator_id", "actor", "request_id", "event_time")
POSTING_COLUMNS = ("position", "account", "amount")
# What the journal does with an event class: note a wallet's owner, post an entry, or (None)
# nothing; looked up once per class in a batch instead of isinstance checks per event.
_KINDS: dict[type[Any], str | None] = {W.Opened: "owner", **dict.fromkeys(MONEY_EVENTS, "entry")}


class JournalProjection:
    name = "journal"
    tables = ("journal_postings", "journal_entries", "journal_wallet_owners")

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        wallet_ids = {p.originator_id for p in with_topic_prefix(events, "peerpush:Wallet.")}
        owners = {
            r["wallet_id"]: r["user_id"]
            for r in fetch_by(cur, "journal_wallet_owners", "wallet_id", wallet_ids)
        }
        new_owners: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        postings: list[tuple[Any, ...]] = []
        kinds = {cls: by_class(_KINDS, cls) for cls in {type(p.event) for p in events}}
        for p in events:
            e = p.event
            kind = kinds[type(e)]
            if kind is None:
                continue
            if kind == "owner":
                owners[p.originator_id] = e.user_id
                new_owners.append((p.originator_id, e.user_id))
                continue
            user = owners.get(p.originator_id)
            entries.append(
                (p.position, type(e).__name__, p.originator_id, e.actor, e.request_id, p.at)
            )
            for account, amount in _postings(e, p.originator_id, user):
                postings.append((p.position, account, amount))
        copy_rows(cur, "journal_wallet_owners", ("wallet_id", "user_id"), new_owners)
        copy_rows(cur, "journal_entries", ENTRY_COLUMNS, entries)
        copy_rows(cur, "journal_postings", POSTING_COLUMNS, postings)


def _postings(e: Any, originator: UUID, user: UUID | None) -> list[tuple[str, int]]:
    """The postings of one money event, merged per account, zeros dropped."""
    lines: defaultdict[str, int] = defaultdict(int)

    def move(source: str, target: str, tokens: int) -> None:
        lines[source] -= tokens
        lines[target] += tokens

    u = f"user:{user}"
    avail, frozen, pending = f"{u}:available", f"{u}:frozen", f"{u}:withdrawal_pending"
    losses = "platform:dispute_losses"
    cashing = f"{u}:cashout_pending"

    def give_back(source: str, returned: Iterable[Sequence[Any]]) -> None:
        for _lot, refilled, recovered, is_frozen in returned:
            move(source, frozen if is_frozen else avail, refilled)
            move(source, losses, recovered)

    if isinstance(e, W.DepositCredited):
        move("stripe:clearing", avail, e.tokens)
    elif isinstance(e, W.StakeLocked):
        move(avail, f"challenge:{e.challenge_id}:stake:{user}", e.tokens)
    elif isinstance(e, W.PenaltyCharged):
        move(avail, f"challenge:{e.challenge_id}:penalties", e.tokens)
    elif isinstance(e, W.HoldsReturned):
        stake_account = f"challenge:{e.challenge_id}:stake:{user}"
        penalties = f"challenge:{e.challenge_id}:penalties"
        lines[stake_account] -= e.stake
        lines[penalties] -= e.penalties
        for _lot, refilled, recovered, is_frozen in e.returned:
            lines[frozen if is_frozen else avail] += refilled
            lines[losses] += recovered
    elif isinstance(e, C.Settled):
        stakes = 0
        for user_id, _exp, _acc, finished, stake, share in e.results:
            lines[f"challenge:{originator}:stake:{user_id}"] -= stake
            stakes += stake
            if finished:
                lines[f"user:{user_id}:available"] += share
        lines[f"challenge:{originator}:penalties"] -= e.pool - stakes
        lines["platform:revenue"] += e.fee + e.forfeited
    elif isinstance(e, W.StakeSettled):
        # The Settled entry credited the whole share to available; move what refilled frozen
        # lots or repaid a dispute loss.
        give_back(avail, e.returned)
    elif isinstance(e, W.WithdrawalRequested):
        move(avail, pending, e.tokens)
    elif isinstance(e, W.LotRefunded):
        move(pending, "stripe:refunds", e.tokens)
    elif isinstance(e, W.LotRefundRefused):
        give_back(pending, e.returned)
    elif isinstance(e, W.RefundFailed):
        give_back("stripe:refunds", e.returned)
    elif isinstance(e, W.AdjustmentCredited):
        move("platform:adjustments", avail, e.tokens)
    elif isinstance(e, W.AdjustmentDebited):
        move(avail, "platform:adjustments", e.tokens)
    elif isinstance(e, W.LotFrozen):
        move(avail, frozen, e.tokens)
    elif isinstance(e, W.LotUnfrozen):
        move(frozen, avail, e.tokens)
    elif isinstance(e, W.LotWrittenOff):
        move(frozen if e.from_frozen else avail, "stripe:disputes", e.taken)
        move(losses, "stripe:disputes", e.loss)
        move(frozen, avail, e.released)
    elif isinstance(e, W.TokensUnclaimed):
        move(avail, "platform:unclaimed", e.tokens)
    elif isinstance(e, W.WriteOffReversed):
        give_back("stripe:disputes", e.returned)
    elif isinstance(e, W.CashoutRequested):
        move(avail, cashing, e.tokens)
    elif isinstance(e, W.CashoutSettled):
        move(cashing, "stripe:transfers", e.tokens)
    elif isinstance(e, W.CashoutFailed):
        give_back(cashing, e.returned)
    elif isinstance(e, W.CashoutReversed):
        give_back("stripe:transfers", e.returned)
    return sorted((account, amount) for account, amount in lines.items() if amount)
