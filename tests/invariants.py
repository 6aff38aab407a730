"""SPEC §8's invariants, checked over every aggregate in a ledger's event store.

Property tests and integration tests call :func:`assert_ledger_invariants` after any
sequence of commands; a broken invariant names the wallet or challenge and the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.ledger import Ledger
from domain.challenge import CANCELLED, SETTLED, Challenge
from domain.wallet import Wallet


@dataclass(frozen=True)
class LedgerTotals:
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
            + self.revenue
        )


def all_of(app: Ledger, cls: type, created_topic: str) -> list:
    ids: list[UUID] = [n.originator_id for n in app._notifications((created_topic,))]
    return [app.repository.get(i) for i in ids]


def wallets(app: Ledger) -> list[Wallet]:
    return all_of(app, Wallet, Wallet.Opened.TOPIC)


def challenges(app: Ledger) -> list[Challenge]:
    return all_of(app, Challenge, Challenge.Drafted.TOPIC)


def check_wallet(w: Wallet) -> None:
    usable = sum(lot.remaining for lot in w.lots.values() if lot.usable)
    frozen = sum(lot.remaining for lot in w.lots.values() if lot.frozen)
    assert w.available == usable, f"wallet {w.user_id}: available {w.available} != {usable}"
    assert w.frozen == frozen, f"wallet {w.user_id}: frozen {w.frozen} != lots {frozen}"
    assert w.available >= 0, f"wallet {w.user_id}: negative available {w.available}"
    for lot in w.lots.values():
        assert 0 <= lot.remaining <= lot.amount, f"lot {lot.lot_id}: {lot.remaining}/{lot.amount}"
        assert lot.loss >= 0, f"lot {lot.lot_id}: negative loss {lot.loss}"
    staked = sum(sum(n for _, n in taken) for taken in w.stakes.values())
    assert w.staked == staked, f"wallet {w.user_id}: staked {w.staked} != holds {staked}"
    pending = sum(
        n
        for hold in w.withdrawals.values()
        for lot, n in hold.lots.items()
        if hold.outcomes.get(lot, "pending") == "pending"
    )
    assert w.withdrawal_pending == pending, (
        f"wallet {w.user_id}: withdrawal_pending {w.withdrawal_pending} != {pending}"
    )


def check_challenge(c: Challenge) -> None:
    stakes = sum(p.stake for p in c.participants.values())
    penalties = sum(p.penalties for p in c.participants.values())
    if c.status == SETTLED:
        assert c.pool == 0
        out = c.paid_out + c.forfeited + c.fee + c.returned
        assert stakes + penalties == out, f"challenge {c.id}: {stakes}+{penalties} != {out}"
    elif c.status == CANCELLED:
        assert c.pool == 0
        assert stakes + penalties == c.returned, f"challenge {c.id}: not all returned"
    else:
        assert c.pool == stakes + penalties, f"challenge {c.id}: pool {c.pool}"


def totals(app: Ledger) -> LedgerTotals:
    ws, cs = wallets(app), challenges(app)
    open_pools = sum(c.pool for c in cs if c.status not in (SETTLED, CANCELLED))
    dispute_losses = sum(lot.loss for w in ws for lot in w.lots.values())
    revenue = sum(c.fee + c.forfeited for c in cs if c.status == SETTLED) - dispute_losses
    return LedgerTotals(
        deposited=sum(w.deposited for w in ws),
        adjusted_in=sum(w.adjusted_in for w in ws),
        available=sum(w.available for w in ws),
        frozen=sum(w.frozen for w in ws),
        withdrawal_pending=sum(w.withdrawal_pending for w in ws),
        cashout_pending=sum(w.cashout_pending for w in ws),
        open_pools=open_pools,
        refunded=sum(w.refunded for w in ws),
        cashed_out=sum(w.cashed_out for w in ws),
        written_off=sum(w.written_off_total for w in ws),
        adjusted_out=sum(w.adjusted_out for w in ws),
        revenue=revenue,
    )


def assert_ledger_invariants(app: Ledger) -> LedgerTotals:
    """Every invariant of SPEC §8 that the aggregates can show; returns the totals."""
    ws, cs = wallets(app), challenges(app)
    for w in ws:
        check_wallet(w)
    for c in cs:
        check_challenge(c)
    open_ids = {str(c.id) for c in cs if c.status not in (SETTLED, CANCELLED)}
    for w in ws:
        for challenge_id in (*w.stakes, *w.penalties):
            assert challenge_id in open_ids, f"wallet {w.user_id} holds for closed {challenge_id}"
    held = sum(w.staked for w in ws) + sum(
        sum(n for _, n in taken) for w in ws for taken in w.penalties.values()
    )
    pools = sum(c.pool for c in cs if str(c.id) in open_ids)
    assert held == pools, f"Σ staked + penalties held {held} != Σ open pools {pools}"
    for c in cs:
        if str(c.id) in open_ids:
            in_wallets = sum(w.stake_in(c.id) + w.penalties_in(c.id) for w in ws)
            assert in_wallets == c.pool, f"challenge {c.id}: wallets {in_wallets} != {c.pool}"
    t = totals(app)
    assert t.credited == t.accounted, f"conservation broken: {t.credited} != {t.accounted} {t}"
    return t
