"""Whole scenarios on PostgreSQL, read back by a second ``Ledger`` (rules §1–3, §6, §8).

The event stream is the source of truth: a ``Ledger`` started later on the same schema — a new
process, with an empty aggregate cache — must rebuild exactly the state the first one holds:
the same lots, remainders and balances, from events and snapshots alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate

from application.ledger import Ledger
from application.ports import AdjustableClock
from domain import ids
from domain.aggregate import Cause
from domain.challenge import CANCELLED, SETTLED
from domain.verification import REJECTED, ProofFacts
from tests.invariants import assert_ledger_invariants

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
TEXT_PROOF = ProofFacts("text", "k", "text/plain", 10, "abc")
REFUNDS = Cause.worker("refunds")


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock(START, frozen=True)


@pytest.fixture
def app(pg_env: dict[str, str], clock: AdjustableClock) -> Iterator[Ledger]:
    ledger = Ledger(pg_env, clock=clock)
    try:
        yield ledger
    finally:
        ledger.close()


def state(aggregate: Aggregate) -> dict[str, Any]:
    """Everything an aggregate holds (lots, holds, balances, version), for comparison."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def assert_same_state(first: Ledger, second: Ledger, aggregate_ids: list[UUID]) -> None:
    for aggregate_id in aggregate_ids:
        assert state(second.repository.get(aggregate_id)) == state(
            first.repository.get(aggregate_id)
        ), aggregate_id
    assert assert_ledger_invariants(second) == assert_ledger_invariants(first)


def lots(app: Ledger, user: UUID) -> list[tuple[str, int, int]]:
    return [(lot.source, lot.amount, lot.remaining) for lot in app.wallet_of(user).lots.values()]


def balances(app: Ledger, user: UUID) -> tuple[int, ...]:
    w = app.wallet_of(user)
    return (w.available, w.frozen, w.staked, w.withdrawal_pending, w.won, w.forfeited, w.penalised)


def test_a_challenge_from_deposit_to_withdrawal_reads_back_identically(
    app: Ledger, clock: AdjustableClock, reopen: Any
) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    for i, user in enumerate((a, b, c)):
        app.credit_deposit(user, f"pi_{i}", 10_000, Cause.stripe(f"evt_{i}"))
        app.credit_deposit(user, f"pi_{i}", 10_000, Cause.stripe(f"evt_{i}_again"))
    created = app.create_challenge(
        a,
        Cause.user(a),
        name="Run daily",
        starts_at=datetime(2026, 3, 2, tzinfo=UTC),
        ends_at=datetime(2026, 3, 5, tzinfo=UTC),
        entry_stake=500,
        window_start="06:00",
        window_end="22:00",
        timezone="UTC",
        verification_mode="quorum",
        penalty_tokens=100,
        proof_types=["text"],
    )
    challenge_id = created.challenge_id
    app.publish(challenge_id, a, Cause.user(a))
    app.join(created.invite_code, b, "Europe/Paris", Cause.user(b))
    app.join(created.invite_code, c, "UTC", Cause.user(c))
    clock.set(datetime(2026, 3, 2, 8, tzinfo=UTC))
    rejected = app.submit(challenge_id, a, TEXT_PROOF, Cause.user(a))
    assert app.vote(rejected.submission_id, b, False, Cause.user(b)).status == REJECTED
    assert app.challenge(challenge_id).pool == 1_600
    submissions = [rejected.submission_id]
    for day in range(3):
        clock.set(datetime(2026, 3, 2 + day, 9, tzinfo=UTC))
        for user, peer in ((b, c), (c, b)):
            made = app.submit(challenge_id, user, TEXT_PROOF, Cause.user(user))
            app.vote(made.submission_id, peer, True, Cause.user(peer))
            app.vote(made.submission_id, a, True, Cause.user(a))
            submissions.append(made.submission_id)

    # A second ledger (another process) sees the open challenge exactly as the first does.
    mid = reopen()
    everything = [
        challenge_id,
        ids.invite_code_id(created.invite_code),
        *(ids.wallet_id(u) for u in (a, b, c)),
        *submissions,
    ]
    assert_same_state(app, mid, everything)

    clock.set(datetime(2026, 3, 6, 1, tzinfo=UTC))
    assert app.settle_due().settled == (challenge_id,)
    assert app.settle_due().settled == ()
    withdrawal = app.request_withdrawal(b, uuid4(), 9_000, Cause.user(b))
    (lot_id, tokens), *_ = withdrawal.lots
    app.record_refund(b, withdrawal.withdrawal_id, lot_id, "re_1", REFUNDS)

    assert lots(app, a) == [("deposit", 10_000, 9_400)]
    assert balances(app, a) == (9_400, 0, 0, 0, 0, 500, 100)
    assert lots(app, b) == [("deposit", 10_000, 1_000), ("payout", 300, 300)]
    assert balances(app, b) == (1_300, 0, 0, 0, 300, 0, 0)
    assert app.wallet_of(b).refunded == tokens == 9_000
    assert lots(app, c) == [("deposit", 10_000, 10_000), ("payout", 300, 300)]
    assert app.challenge(challenge_id).status == SETTLED
    assert app.challenge(challenge_id).pool == 0

    late = reopen()
    assert_same_state(app, late, everything)
    # The first ledger's cache catches up with what another ledger wrote.
    late.credit_deposit(c, "pi_late", 250, Cause.stripe("evt_late"))
    assert app.wallet_of(c).available == late.wallet_of(c).available == 10_550
    assert state(app.wallet_of(c)) == state(late.wallet_of(c))


def test_cancellation_refused_refund_and_disputes_read_back_identically(
    app: Ledger, clock: AdjustableClock, reopen: Any
) -> None:
    a, b, admin = uuid4(), uuid4(), uuid4()
    app.credit_deposit(a, "pi_a1", 5_000, Cause.stripe("evt_a1"))
    app.credit_deposit(a, "pi_a2", 3_000, Cause.stripe("evt_a2"))
    app.credit_deposit(b, "pi_b1", 4_000, Cause.stripe("evt_b1"))
    created = app.create_challenge(
        a,
        Cause.user(a),
        name="No sugar",
        starts_at=START + timedelta(days=1),
        ends_at=START + timedelta(days=4),
        entry_stake=1_000,
        verification_mode="quorum",
        penalty_tokens=200,
        proof_types=["text"],
    )
    challenge_id = created.challenge_id
    app.publish(challenge_id, a, Cause.user(a))
    app.join(created.invite_code, b, "UTC", Cause.user(b))
    clock.set(START + timedelta(days=1, hours=2))
    made = app.submit(challenge_id, b, TEXT_PROOF, Cause.user(b))
    app.vote(made.submission_id, a, False, Cause.user(a))
    assert lots(app, b) == [("deposit", 4_000, 2_800)]
    assert app.challenge(challenge_id).pool == 2_200

    # b's card payment is disputed and lost while 1,200 of its tokens sit in the pool.
    app.open_dispute(b, "pi_b1", "dp_b", Cause.stripe("evt_dp_b"))
    assert balances(app, b)[:3] == (0, 2_800, 1_000)
    app.close_dispute(b, "dp_b", False, 4_000, Cause.stripe("evt_dp_b_lost"))
    lot_b = app.wallet_of(b).lot(ids.deposit_lot_id("pi_b1"))
    assert (lot_b.remaining, lot_b.loss, lot_b.written_off) == (0, 1_200, True)

    # An admin cancels after the start: stakes and penalty go back to the lots they left;
    # b's first pay back the dispute loss booked on its written-off lot.
    app.cancel(challenge_id, admin, Cause.admin(admin), is_admin=True, reason="fraud")
    assert app.challenge(challenge_id).status == CANCELLED
    assert lots(app, a) == [("deposit", 5_000, 5_000), ("deposit", 3_000, 3_000)]
    lot_b = app.wallet_of(b).lot(ids.deposit_lot_id("pi_b1"))
    assert (lot_b.remaining, lot_b.loss) == (0, 0)
    assert balances(app, b) == (0, 0, 0, 0, 0, 0, 0)

    # a withdraws across both lots; the second lot's refund is refused and comes back.
    withdrawal = app.request_withdrawal(a, uuid4(), 7_000, Cause.user(a))
    (first, n1), (second, n2) = withdrawal.lots
    assert (n1, n2) == (5_000, 2_000)
    app.record_refund(a, withdrawal.withdrawal_id, first, "re_a1", REFUNDS)
    app.refuse_refund(a, withdrawal.withdrawal_id, second, "card expired", REFUNDS)
    hold = app.wallet_of(a).withdrawals[str(withdrawal.withdrawal_id)]
    assert hold.settled and hold.outcomes == {str(first): "refunded", str(second): "refused"}
    assert lots(app, a) == [("deposit", 5_000, 0), ("deposit", 3_000, 3_000)]
    # Later the refund fails after all, and a disputed lot is frozen, then won.
    app.fail_refund(a, withdrawal.withdrawal_id, first, Cause.stripe("evt_re_failed"))
    app.open_dispute(a, "pi_a2", "dp_a", Cause.stripe("evt_dp_a"))
    assert balances(app, a)[:2] == (5_000, 3_000)

    mid = reopen()
    everything = [
        challenge_id,
        made.submission_id,
        ids.wallet_id(a),
        ids.wallet_id(b),
    ]
    assert_same_state(app, mid, everything)

    app.close_dispute(a, "dp_a", True, 3_000, Cause.stripe("evt_dp_a_won"))
    assert lots(app, a) == [("deposit", 5_000, 5_000), ("deposit", 3_000, 3_000)]
    assert balances(app, a) == (8_000, 0, 0, 0, 0, 0, 0)
    totals = assert_ledger_invariants(app)
    assert (totals.deposited, totals.written_off, totals.revenue) == (12_000, 4_000, 0)
    assert_same_state(app, reopen(), everything)


def test_a_long_wallet_is_snapshotted_and_a_new_ledger_loads_it_from_the_snapshot(
    app: Ledger, clock: AdjustableClock, reopen: Any
) -> None:
    user, owner = uuid4(), uuid4()
    wallet_id = ids.wallet_id(user)
    app.credit_deposit(owner, "pi_owner", 1_000, Cause.stripe("evt_owner"))
    created = app.create_challenge(
        owner,
        Cause.user(owner),
        name="Long haul",
        starts_at=START + timedelta(days=30),
        ends_at=START + timedelta(days=40),
        entry_stake=75,
    )
    app.publish(created.challenge_id, owner, Cause.user(owner))

    def deposit(n: int) -> None:
        app.credit_deposit(user, f"pi_{n}", 100, Cause.stripe(f"evt_{n}"))

    for n in range(30):
        deposit(n)
    for _ in range(20):
        app.adjust(user, "credit", 5, "goodwill", uuid4(), Cause.admin(owner))
    for n in range(10):
        withdrawal = app.request_withdrawal(user, uuid4(), 150, Cause.user(user))
        for k, (lot_id, _) in enumerate(withdrawal.lots):
            if (n + k) % 2:
                app.refuse_refund(user, withdrawal.withdrawal_id, lot_id, "no", REFUNDS)
            else:
                app.record_refund(user, withdrawal.withdrawal_id, lot_id, f"re_{n}_{k}", REFUNDS)
    for _ in range(5):
        app.adjust(user, "debit", 30, "correction", uuid4(), Cause.admin(owner))
    app.join(created.invite_code, user, "UTC", Cause.user(user))
    app.open_dispute(user, "pi_29", "dp_29", Cause.stripe("evt_dp_29"))
    n = 30
    while app.wallet_of(user).version < 105:
        deposit(n)
        n += 1
    app.request_withdrawal(user, uuid4(), 120, Cause.user(user))  # still in flight
    wallet = app.wallet_of(user)
    assert wallet.version > 100
    assert wallet.frozen == 100 and wallet.staked == 75 and wallet.withdrawal_pending == 120

    snapshots = list(app.snapshots.get(wallet_id)) if app.snapshots else []
    assert [s.originator_version for s in snapshots] == [100]
    # The snapshot holds exactly the state the events up to it rebuild.
    replayed = app.repository.get(wallet_id, version=100)
    assert state(snapshots[0].mutate(None)) == state(replayed)

    fresh = reopen()
    read_from: list[Any] = []
    events_get = fresh.events.get

    def spy(*args: Any, **kwargs: Any) -> Any:
        read_from.append(kwargs.get("gt"))
        return events_get(*args, **kwargs)

    fresh.events.get = spy  # type: ignore[method-assign]
    assert state(fresh.wallet_of(user)) == state(app.wallet_of(user))
    assert read_from == [100], "the new ledger replayed the wallet instead of its snapshot"
    assert assert_ledger_invariants(fresh) == assert_ledger_invariants(app)
