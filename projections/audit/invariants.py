"""rules §8's invariants over wallets and challenges, however they were rebuilt.

The audit replays the stream into aggregates and calls :func:`problems`; the property tests
load aggregates from a ledger and assert that the list is empty (``tests/invariants.py``).
Each problem names the wallet or challenge and the numbers, so a broken invariant can be
traced to its events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from domain.challenge import CANCELLED, SETTLED, Challenge
from domain.values import CashoutStatus
from domain.wallet import Wallet
from domain.wallet_state import held


@dataclass(frozen=True)
class LedgerTotals:
    """rules §8 conservation: every token credited is in exactly one of these places.

    ``unclaimed`` holds tokens that reached an erased user's wallet and no refund returned
    (rules §7); it is never revenue.
    """

    deposited: int
    adjusted_in: int
    available: int
    frozen: int
    withdrawal_pending: int
    cashout_pending: int
    open_pools: int
    refunded: int
    cashed_out: int
    written_off: int
    adjusted_out: int
    revenue: int
    unclaimed: int = 0

    @property
    def credited(self) -> int:
        return self.deposited + self.adjusted_in

    @property
    def accounted(self) -> int:
        return (
            self.available
            + self.frozen
            + self.withdrawal_pending
            + self.cashout_pending
            + self.open_pools
            + self.refunded
            + self.cashed_out
            + self.written_off
            + self.adjusted_out
            + self.unclaimed
            + self.revenue
        )

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "credited": self.credited, "accounted": self.accounted}


def is_open(c: Challenge) -> bool:
    return c.status not in (SETTLED, CANCELLED)


def wallet_problems(w: Wallet) -> list[str]:
    """Lots add up to the balances, no remainder out of range, holds add up."""
    out = []
    name = f"wallet {w.id} (user {w.user_id})"
    usable = sum(lot.remaining for lot in w.lots.values() if lot.usable)
    frozen = sum(lot.remaining for lot in w.lots.values() if lot.frozen)
    if w.available != usable:
        out.append(f"{name}: available {w.available} != Σ usable lots {usable}")
    if w.frozen != frozen:
        out.append(f"{name}: frozen {w.frozen} != Σ frozen lots {frozen}")
    if w.available < 0:
        out.append(f"{name}: negative available {w.available}")
    for lot in w.lots.values():
        if not 0 <= lot.remaining <= lot.amount:
            out.append(f"{name}: lot {lot.lot_id} remainder {lot.remaining} of {lot.amount}")
        if lot.loss < 0:
            out.append(f"{name}: lot {lot.lot_id} negative dispute loss {lot.loss}")
    staked = sum(held(parts) for parts in w.stakes.values())
    if w.staked != staked:
        out.append(f"{name}: staked {w.staked} != Σ stake holds {staked}")
    pending = sum(
        n
        for hold in w.withdrawals.values()
        for lot, n in hold.lots.items()
        if hold.outcomes.get(lot, "pending") == "pending"
    )
    if w.withdrawal_pending != pending:
        out.append(f"{name}: withdrawal_pending {w.withdrawal_pending} != Σ pending lots {pending}")
    cashing = sum(h.tokens for h in w.cashouts.values() if h.status == CashoutStatus.PENDING)
    if w.cashout_pending != cashing:
        out.append(f"{name}: cashout_pending {w.cashout_pending} != Σ pending cash-outs {cashing}")
    paid = sum(
        h.tokens - h.reversed for h in w.cashouts.values() if h.status == CashoutStatus.SETTLED
    )
    if w.cashed_out != paid:
        out.append(f"{name}: cashed_out {w.cashed_out} != Σ settled − reversed {paid}")
    return out


def challenge_problems(c: Challenge) -> list[str]:
    """pool = stakes + penalties − what left it; 0 once settled or cancelled."""
    stakes = sum(p.stake for p in c.participants.values())
    penalties = sum(p.penalties for p in c.participants.values())
    name = f"challenge {c.id}"
    if c.status == SETTLED:
        out = c.paid_out + c.forfeited + c.fee + c.returned
        problems = [] if c.pool == 0 else [f"{name}: settled with pool {c.pool}"]
        if stakes + penalties != out:
            problems.append(
                f"{name}: stakes {stakes} + penalties {penalties} != paid out {c.paid_out} + "
                f"forfeited {c.forfeited} + fee {c.fee} + returned {c.returned}"
            )
        return problems
    if c.status == CANCELLED:
        problems = [] if c.pool == 0 else [f"{name}: cancelled with pool {c.pool}"]
        if stakes + penalties != c.returned:
            problems.append(f"{name}: returned {c.returned} != {stakes} + {penalties}")
        return problems
    if c.pool != stakes + penalties:
        return [f"{name}: pool {c.pool} != stakes {stakes} + penalties {penalties}"]
    return []


def totals(wallets: Sequence[Wallet], challenges: Iterable[Challenge]) -> LedgerTotals:
    open_pools = settled_revenue = 0
    for c in challenges:
        if c.status == SETTLED:
            settled_revenue += c.fee + c.forfeited
        elif c.status != CANCELLED:
            open_pools += c.pool
    dispute_losses = sum(lot.loss for w in wallets for lot in w.lots.values())
    return LedgerTotals(
        deposited=sum(w.deposited for w in wallets),
        adjusted_in=sum(w.adjusted_in for w in wallets),
        available=sum(w.available for w in wallets),
        frozen=sum(w.frozen for w in wallets),
        withdrawal_pending=sum(w.withdrawal_pending for w in wallets),
        cashout_pending=sum(w.cashout_pending for w in wallets),
        open_pools=open_pools,
        refunded=sum(w.refunded for w in wallets),
        cashed_out=sum(w.cashed_out for w in wallets),
        written_off=sum(w.written_off_total for w in wallets),
        adjusted_out=sum(w.adjusted_out for w in wallets),
        revenue=settled_revenue - dispute_losses,
        unclaimed=sum(w.unclaimed for w in wallets),
    )


def problems(wallets: Sequence[Wallet], challenges: Sequence[Challenge]) -> list[str]:
    """Every rules §8 invariant the aggregates can show; empty when all hold."""
    out: list[str] = []
    for w in wallets:
        out += wallet_problems(w)
    for c in challenges:
        out += challenge_problems(c)
    open_pools = {str(c.id): c.pool for c in challenges if is_open(c)}
    held_in: dict[str, int] = dict.fromkeys(open_pools, 0)
    for w in wallets:
        for challenge_id in {*w.stakes, *w.penalties}:
            if challenge_id not in open_pools:
                out.append(f"wallet {w.id} (user {w.user_id}) holds for closed {challenge_id}")
                continue
            held_in[challenge_id] += held(w.stakes.get(challenge_id, ())) + held(
                w.penalties.get(challenge_id, ())
            )
    for challenge_id, pool in open_pools.items():
        if held_in[challenge_id] != pool:
            out.append(f"challenge {challenge_id}: wallets hold {held_in[challenge_id]} != {pool}")
    in_holds = sum(w.staked for w in wallets) + sum(
        held(parts) for w in wallets for parts in w.penalties.values()
    )
    pools = sum(open_pools.values())
    if in_holds != pools:
        out.append(f"Σ staked + penalties held {in_holds} != Σ open pools {pools}")
    t = totals(wallets, challenges)
    if t.credited != t.accounted:
        out.append(f"conservation: credited {t.credited} != accounted {t.accounted} ({t})")
    return out
