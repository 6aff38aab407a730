"""Random sequences of every ledger command keep rules §8's invariants (a stateful property test).

A hypothesis state machine plays four users, an admin, Stripe and the workers against one
:class:`~application.ledger.Ledger`: deposits (some delivered twice, some disputed before they
arrive), challenges created, edited, published, joined, proven, voted on, settled and
cancelled, withdrawals refunded, refused and failing later, disputes won and lost, refunds made
outside our flow (some failing later), admin adjustments, and users erased: their wallets
closed, payments arriving late, a closed wallet's tokens refunded to the card once and the rest
moved to ``unclaimed``, with business time moving forward in between.

A refusal (a :class:`~domain.errors.DomainError`) is an expected outcome, and a refused
command must change nothing: the stream head stays where it was. After every step the whole
ledger must satisfy :func:`tests.invariants.assert_ledger_invariants`, and what a user would
notice must match a small model: a delivery counted once, a wallet never below zero, a
settled pool at zero, a re-join with no second stake, a capped penalty.

The same machine runs on PostgreSQL, in a fresh schema per example. Every save goes through
group commit (`application.group_commit`); one variant writes each command's save in a batch
with another command's, and one runs with group commit off.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import CanMutateAggregate
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from adapters.persistence import (
    DatabaseSettings,
    drop_schema,
    ensure_schema,
    resolve_database_url,
)
from adapters.settings import StoreSettings
from application.erasure import erase_user
from application.group_commit import GroupCommit, Save
from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from domain.cashouts import FAILED as CASHOUT_FAILED
from domain.cashouts import PENDING as CASHOUT_PENDING
from domain.cashouts import SETTLED as CASHOUT_SETTLED
from domain.challenge import ACTIVE, CANCELLED, DRAFT, SETTLED, Challenge
from domain.errors import (
    BelowMinimumCashout,
    DomainError,
    DuplicateVote,
    Forbidden,
    InsufficientFunds,
    NotCashoutable,
    NotParticipant,
    NotRefundable,
    OutcomeAlreadyRecorded,
    OwnSubmission,
    VoteRefused,
    WalletClosed,
)
from domain.invite import InviteCode
from domain.verification import PENDING, REJECTED, ProofFacts, Verification
from domain.wallet import Wallet
from tests.invariants import assert_ledger_invariants

T = TypeVar("T")

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
NS = UUID("0b9e5a43-7c1d-4f0e-8a52-3d6f1e2c9b70")
USERS = tuple(uuid5(NS, f"user-{i}") for i in range(4))
ADMIN = uuid5(NS, "admin")
TIMEZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
WINDOWS = (("00:00", "00:00"), ("06:00", "22:00"), ("20:00", "04:00"))
PHOTO_HASHES = tuple(c * 64 for c in "abc")
REFUND_WORKER = Cause.worker("refunds")
CASHOUT_WORKER = Cause.worker("cashouts")
ERASURE_WORKER = Cause.worker("erasure")
SETTLEMENT_DELAY = timedelta(hours=24)

user_index = st.integers(0, len(USERS) - 1)
pick = st.integers(0, 10_000)
"""An index into one of the model's lists, taken modulo its length."""
strays = st.integers(0, 5)
"""0: pick among everything, so a command also meets things in the wrong state."""


CHALLENGES: dict[str, st.SearchStrategy[Any]] = dict(
    owner=user_index,
    stake=st.sampled_from([0, 1, 50, 200, 700]),
    penalty=st.sampled_from([0, 1, 30, 500]),
    mode=st.sampled_from(["auto", "quorum"]),
    quorum_pct=st.sampled_from([50, 60, 100]),
    grace=st.integers(0, 3),
    frequency=st.sampled_from(["daily", "weekdays", "weekly"]),
    window=st.sampled_from(WINDOWS),
    scope=st.sampled_from(["participant_local", "challenge_tz"]),
    starts_in_hours=st.integers(1, 48),
    lasts_hours=st.sampled_from([12, 24, 48, 72, 192]),
    max_participants=st.integers(2, 4),
    private=st.booleans(),
    proof_types=st.sampled_from([("text",), ("photo",), ("photo", "text")]),
    publish_now=st.sampled_from([True, True, False]),
    joiners=st.lists(user_index, min_size=1, max_size=5),
)
"""The terms of a random challenge, and whether it is published and joined at once."""


@dataclass
class Intent:
    """A Stripe PaymentIntent the machine made up: its user, what was paid, if delivered."""

    user: UUID
    cents: int
    credited: bool = False


@dataclass
class ChallengeModel:
    challenge_id: UUID
    owner: UUID
    invite_code: str
    photo_hashes: set[str] = field(default_factory=set)


class NoAccounts:
    """The users table, which this machine does not have: erasing changes no row."""

    def erase(self, user_id: UUID) -> None:
        return None


class ReplayingLedger(Ledger):
    """The ledger with a snapshot every few events and (in :func:`replaying_ledger`) no
    aggregate cache, so that every command and every check rebuilds its aggregates from
    snapshots and events: what a fresh process sees, and what a replay must reproduce."""

    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Wallet: 3,
        Challenge: 3,
        Verification: 2,
    }


def replaying_ledger(clock: AdjustableClock) -> Ledger:
    return ReplayingLedger({"AGGREGATE_CACHE_MAXSIZE": ""}, clock=clock)


class LedgerMachine(RuleBasedStateMachine):
    """Every command of the ledger, in any order, against a small model of what users see."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = AdjustableClock(START, frozen=True)
        self.app = self.make_app(self.clock)
        self.intents: dict[str, Intent] = {}
        self.challenges: list[ChallengeModel] = []
        self.submissions: list[tuple[UUID, ChallengeModel]] = []
        # (user, withdrawal id, lot id) of every lot a withdrawal held, and its outcome.
        self.withdrawn: list[tuple[UUID, UUID, UUID]] = []
        self.outcomes: dict[tuple[UUID, UUID, UUID], str] = {}
        self.disputes: list[tuple[str, str]] = []  # (dispute id, payment intent id)
        self.external_refunds: list[tuple[UUID, str]] = []  # (user, refund id) written off
        self.erased: set[UUID] = set()
        self.cashouts: list[tuple[UUID, UUID]] = []  # (user, cash-out id)

    def make_app(self, clock: AdjustableClock) -> Ledger:
        return replaying_ledger(clock)

    def teardown(self) -> None:
        self.app.close()

    # -- helpers ----------------------------------------------------------------------------

    def attempt(self, command: Callable[[], T]) -> T | None:
        """Run a command; a refusal is an outcome, but it must not have moved the stream."""
        head = self.app.head()
        try:
            return command()
        except DomainError:
            assert self.app.head() == head, "a refused command recorded events"
            return None

    def refused(
        self,
        command: Callable[[], object],
        error: type[DomainError] | tuple[type[DomainError], ...],
    ) -> None:
        """A command the model knows must be refused with ``error``, changing nothing."""
        head = self.app.head()
        try:
            command()
        except error:
            assert self.app.head() == head, "a refused command recorded events"
        else:
            raise AssertionError(f"expected a refusal: {error}")

    def wallet(self, user: UUID) -> Any:
        try:
            return self.app.wallet_of(user)
        except DomainError:
            return None

    def available(self, user: UUID) -> int:
        wallet = self.wallet(user)
        return 0 if wallet is None else wallet.available

    def now(self) -> datetime:
        return self.clock.now()

    # -- Stripe: deposits, disputes, refunds outside our flow --------------------------------

    @initialize(
        cents=st.lists(st.sampled_from([300, 2_000, 5_000]), min_size=3, max_size=4),
        first=st.fixed_dictionaries(
            {
                **CHALLENGES,
                "publish_now": st.just(True),
                "private": st.just(False),
                "max_participants": st.just(4),
                "joiners": st.lists(user_index, min_size=2, max_size=4, unique=True),
            }
        ),
    )
    def a_running_platform(self, cents: list[int], first: dict[str, Any]) -> None:
        """Start with money in a few wallets and a published challenge others join, so that
        every example can reach proofs, votes and settlement within its few steps."""
        for user, amount in zip(USERS, cents, strict=False):
            pi = f"pi_{len(self.intents)}"
            self.intents[pi] = Intent(user, amount)
            self.deliver(pi)
        self.draft_challenge(**first)

    @rule(user=user_index, cents=st.sampled_from([1, 99, 300, 1_000, 2_500]), paid=st.booleans())
    def deposit(self, user: int, cents: int, paid: bool) -> None:
        """A checkout: paid at once, or its PaymentIntent delivered later (or never)."""
        pi = f"pi_{len(self.intents)}"
        self.intents[pi] = Intent(USERS[user], cents)
        if paid:
            self.deliver(pi)

    def deliver(self, pi: str) -> None:
        intent = self.intents[pi]
        before = self.wallet(intent.user)
        head = self.app.head()
        self.app.credit_deposit(intent.user, pi, intent.cents, Cause.stripe(f"evt_{uuid4().hex}"))
        after = self.app.wallet_of(intent.user)
        if intent.credited:
            assert self.app.head() == head, "a repeated delivery recorded events"
            assert after.deposited == before.deposited
        elif before is not None and pi in before.early_disputes:
            # A dispute that came before its deposit (still open) is applied when it is.
            assert after.lot(after.deposits[pi]).frozen
        intent.credited = True

    @precondition(lambda self: self.intents)
    @rule(i=pick)
    def deliver_again(self, i: int) -> None:
        """A webhook (re)delivered: checkout.session.completed or payment_intent.succeeded."""
        self.deliver(list(self.intents)[i % len(self.intents)])

    @precondition(lambda self: self.intents)
    @rule(i=pick)
    def open_dispute(self, i: int) -> None:
        pi = list(self.intents)[i % len(self.intents)]
        dispute_id = f"dp_{len(self.disputes)}"
        self.attempt(
            lambda: self.app.open_dispute(
                self.intents[pi].user, pi, dispute_id, Cause.stripe(f"evt_{dispute_id}")
            )
        )
        self.disputes.append((dispute_id, pi))

    @precondition(lambda self: self.disputes)
    @rule(i=pick, won=st.booleans(), part=st.sampled_from([1, 2, 3, 4]))
    def close_dispute(self, i: int, won: bool, part: int) -> None:
        """Closed won or lost, for all of the payment or a part of it."""
        dispute_id, pi = self.disputes[i % len(self.disputes)]
        intent = self.intents[pi]
        cents = max(1, intent.cents * part // 4)
        self.attempt(
            lambda: self.app.close_dispute(
                intent.user, dispute_id, won, cents, Cause.stripe(f"evt_close_{dispute_id}")
            )
        )

    @precondition(lambda self: any(i.credited for i in self.intents.values()))
    @rule(i=pick, part=st.sampled_from([1, 2, 4]))
    def refund_outside_our_flow(self, i: int, part: int) -> None:
        credited = [pi for pi, intent in self.intents.items() if intent.credited]
        pi = credited[i % len(credited)]
        intent = self.intents[pi]
        cents = max(1, intent.cents * part // 4)
        refund_id = f"re_ext_{uuid4().hex[:8]}"
        done = self.attempt(
            lambda: self.app.write_off_external_refund(
                intent.user, pi, refund_id, cents, Cause.stripe("evt_refund")
            )
        )
        if done is not None:
            self.external_refunds.append((intent.user, refund_id))

    @precondition(lambda self: self.external_refunds)
    @rule(i=pick)
    def external_refund_fails_later(self, i: int) -> None:
        """``refund.updated`` → failed or canceled for a refund made outside our flow: the
        write-off is reversed once, and the lifetime written off falls by its w."""
        user, refund_id = self.external_refunds[i % len(self.external_refunds)]
        before = self.app.wallet_of(user)
        head = self.app.head()
        reversed_ = self.app.reverse_external_refund(user, refund_id, Cause.stripe("evt_fail"))
        after = self.app.wallet_of(user)
        if refund_id in before.write_offs:
            assert reversed_ and self.app.head() > head
            w = before.write_offs[refund_id].written_off
            assert after.written_off_total == before.written_off_total - w
        else:
            assert not reversed_ and self.app.head() == head, "reversed twice"

    # -- wallets: withdrawals and adjustments -------------------------------------------------

    @rule(user=user_index)
    def open_wallet(self, user: int) -> None:
        self.app.open_wallet(USERS[user], Cause.user(USERS[user]))

    @rule(user=user_index, tokens=st.integers(1, 3_000), retried=st.booleans())
    def request_withdrawal(self, user: int, tokens: int, retried: bool) -> None:
        """Refundable deposit lots held, oldest first; a retried request (same id) holds
        nothing more; more than is refundable is refused."""
        user_id = USERS[user]
        wallet = self.wallet(user_id)
        refundable = 0 if wallet is None else wallet.refundable(self.now())
        withdrawal_id = uuid4()
        command = partial(
            self.app.request_withdrawal, user_id, withdrawal_id, tokens, Cause.user(user_id)
        )
        if user_id in self.erased:
            self.refused(command, WalletClosed)
            return
        if wallet is not None and tokens > refundable:
            self.refused(command, NotRefundable)
            return
        held = self.attempt(command)
        if held is None:
            return
        assert sum(n for _, n in held.lots) == tokens
        assert self.available(user_id) == wallet.available - tokens
        if retried:
            head = self.app.head()
            assert command().lots == held.lots
            assert self.app.head() == head, "a retried withdrawal recorded events"
        for lot_id, _ in held.lots:
            key = (user_id, withdrawal_id, lot_id)
            self.withdrawn.append(key)
            self.outcomes[key] = "pending"

    @precondition(lambda self: self.withdrawn)
    @rule(i=pick, stray=strays, refund=st.booleans())
    def refund_worker_records_outcome(self, i: int, stray: int, refund: bool) -> None:
        """The worker's first outcome for a lot: refunded, or refused (tokens back)."""
        keys = [k for k in self.withdrawn if stray == 0 or self.outcomes[k] == "pending"]
        if not keys:
            return
        key = keys[i % len(keys)]
        user_id, withdrawal_id, lot_id = key
        if refund:
            command = partial(
                self.app.record_refund,
                user_id,
                withdrawal_id,
                lot_id,
                f"re_{lot_id.hex[:8]}",
                REFUND_WORKER,
            )
        else:
            command = partial(
                self.app.refuse_refund,
                user_id,
                withdrawal_id,
                lot_id,
                "card_expired",
                REFUND_WORKER,
            )
        if self.outcomes[key] != "pending":
            self.refused(command, OutcomeAlreadyRecorded)
            return
        command()
        self.outcomes[key] = "refunded" if refund else "refused"
        hold = self.app.wallet_of(user_id).withdrawals[str(withdrawal_id)]
        assert hold.settled == all(
            self.outcomes[(user_id, withdrawal_id, UUID(lot))] != "pending" for lot in hold.lots
        )

    @precondition(lambda self: self.withdrawn)
    @rule(i=pick, stray=strays)
    def refund_fails_later(self, i: int, stray: int) -> None:
        """``refund.updated`` → failed: only a lot recorded refunded gets its tokens back."""
        keys = [k for k in self.withdrawn if stray == 0 or self.outcomes[k] == "refunded"]
        if not keys:
            return
        key = keys[i % len(keys)]
        user_id, withdrawal_id, lot_id = key
        head = self.app.head()
        self.app.fail_refund(user_id, withdrawal_id, lot_id, Cause.stripe("evt_refund_failed"))
        if self.outcomes[key] == "refunded":
            assert self.app.head() > head
            self.outcomes[key] = "failed"
        else:
            assert self.app.head() == head, "a failure of no recorded refund recorded events"

    @rule(
        user=user_index,
        credit=st.booleans(),
        tokens=st.sampled_from([1, 10, 100, 1_000]),
    )
    def adjust(self, user: int, credit: bool, tokens: int) -> None:
        user_id = USERS[user]
        before = self.available(user_id)
        command = partial(
            self.app.adjust,
            user_id,
            "credit" if credit else "debit",
            tokens,
            "support ticket",
            uuid4(),
            Cause.admin(ADMIN),
        )
        if not credit and tokens > before:
            self.refused(command, InsufficientFunds)
            return
        command()
        assert self.available(user_id) == before + (tokens if credit else -tokens)

    # -- cash-outs through Stripe Connect (rules §2) ----------------------------------------

    @rule(
        user=user_index,
        tokens=st.sampled_from([1, 999, 1_000, 1_500, 3_000, 60_000]),
        retried=st.booleans(),
    )
    def request_cashout(self, user: int, tokens: int, retried: bool) -> None:
        """Payout and adjustment lots at least 7 days old, oldest first; below the minimum,
        above the daily cap or above what those lots hold is refused and changes nothing."""
        user_id = USERS[user]
        wallet = self.wallet(user_id)
        cashout_id = uuid4()
        command = partial(
            self.app.request_cashout, user_id, cashout_id, tokens, Cause.user(user_id)
        )
        if wallet is None:
            self.attempt(command)
            return
        limits = self.app.settings.cashout_limits
        if user_id in self.erased:
            self.refused(command, WalletClosed)
            return
        if tokens < limits.minimum:
            self.refused(command, BelowMinimumCashout)
            return
        allowance = limits.per_day - wallet.cashed_out_last_day(self.now())
        if tokens > min(allowance, wallet.cashoutable(self.now(), limits.hold)):
            self.refused(command, NotCashoutable)
            return
        held = command()
        assert sum(n for _, n in held.lots) == tokens
        for lot_id, _ in held.lots:
            lot = self.app.wallet_of(user_id).lot(lot_id)
            assert lot.source != "deposit", "card money left by a cash-out"
            assert lot.created_at <= self.now() - limits.hold, "a lot left before its hold"
        after = self.app.wallet_of(user_id)
        assert after.available == wallet.available - tokens
        assert after.cashout_pending == wallet.cashout_pending + tokens
        if retried:
            head = self.app.head()
            assert command().lots == held.lots
            assert self.app.head() == head, "a retried cash-out recorded events"
        self.cashouts.append((user_id, cashout_id))

    @rule(user=user_index)
    def winnings_mature(self, user: int) -> None:
        """An admin's 2,500-token credit, then a week and a day: enough to cash out."""
        user_id = USERS[user]
        self.attempt(
            lambda: self.app.adjust(user_id, "credit", 2_500, "prize", uuid4(), Cause.admin(ADMIN))
        )
        self.clock.advance(timedelta(days=8))

    @precondition(lambda self: self.cashouts)
    @rule(i=pick, stray=strays, made=st.booleans())
    def cashout_worker_records_outcome(self, i: int, stray: int, made: bool) -> None:
        """The transfer's one outcome: settled (the tokens leave), or failed (they return)."""
        user_id, cashout_id = self.cashouts[i % len(self.cashouts)]
        before = self.app.wallet_of(user_id)
        hold = before.cashouts[str(cashout_id)]
        if stray and hold.status != CASHOUT_PENDING:
            return
        if made:
            command = partial(
                self.app.settle_cashout,
                user_id,
                cashout_id,
                f"tr_{cashout_id.hex[:8]}",
                CASHOUT_WORKER,
            )
        else:
            command = partial(
                self.app.fail_cashout, user_id, cashout_id, "account_closed", CASHOUT_WORKER
            )
        if hold.status != CASHOUT_PENDING:
            self.refused(command, OutcomeAlreadyRecorded)
            return
        command()
        after = self.app.wallet_of(user_id)
        assert after.cashout_pending == before.cashout_pending - hold.tokens
        if made:
            assert after.cashouts[str(cashout_id)].status == CASHOUT_SETTLED
            assert after.cashed_out == before.cashed_out + hold.tokens
        else:
            assert after.cashouts[str(cashout_id)].status == CASHOUT_FAILED
            assert after.available + after.frozen >= before.available + before.frozen

    @precondition(lambda self: self.cashouts)
    @rule(i=pick, part=st.sampled_from([1, 300, 1_000, 100_000]), again=st.booleans())
    def transfer_reversed(self, i: int, part: int, again: bool) -> None:
        """``transfer.reversed``, whole or partial: only a settled transfer gives tokens back,
        never more than it paid, and a reversal delivered twice counts once."""
        user_id, cashout_id = self.cashouts[i % len(self.cashouts)]
        before = self.app.wallet_of(user_id)
        hold = before.cashouts[str(cashout_id)]
        reversal_id = f"trr_{len(hold.reversals)}"
        back = self.app.reverse_cashout(
            user_id, cashout_id, reversal_id, part, Cause.stripe("evt_reversed")
        )
        if hold.status != CASHOUT_SETTLED:
            assert back == 0
            return
        assert back == min(part, hold.tokens - hold.reversed)
        after = self.app.wallet_of(user_id)
        assert after.cashed_out == before.cashed_out - back
        if again:
            head = self.app.head()
            assert (
                self.app.reverse_cashout(user_id, cashout_id, reversal_id, part, Cause.stripe("e"))
                == 0
            )
            assert self.app.head() == head, "a reversal delivered twice recorded events"

    # -- erasure (rules §7) ----------------------------------------------------------------------

    @rule(user=user_index, empty_first=st.booleans())
    def erase(self, user: int, empty_first: bool) -> None:
        """Refused while the wallet holds anything or the user takes part in an open
        challenge; otherwise the wallet is closed to its owner. ``empty_first``: an admin
        debits what is available first, so that erasures are reached often."""
        user_id = USERS[user]
        available = self.available(user_id)
        if empty_first and available and user_id not in self.erased:
            self.adjust(user, False, available)
        erased = self.attempt(lambda: erase_user(self.app, NoAccounts(), user_id) or True)
        if erased is None:
            assert user_id in self.erased or not self.app.wallet_of(user_id).closed
            return
        assert self.app.wallet_of(user_id).closed
        assert not self.app.challenges_joined_by(user_id)
        self.erased.add(user_id)

    @precondition(lambda self: self.erased)
    @rule(i=pick, cents=st.sampled_from([100, 1_000]))
    def late_payment(self, i: int, cents: int) -> None:
        """A payment credited to an erased user's wallet: the tokens are not theirs to move."""
        user_id = sorted(self.erased)[i % len(self.erased)]
        pi = f"pi_{len(self.intents)}"
        self.intents[pi] = Intent(user_id, cents)
        self.deliver(pi)
        self.refused(
            partial(self.app.request_withdrawal, user_id, uuid4(), 1, Cause.user(user_id)),
            WalletClosed,
        )

    @precondition(lambda self: self.erased)
    @rule(i=pick)
    def erasure_worker(self, i: int) -> None:
        """The worker's pass over a closed wallet: one refund-withdrawal of the lots still
        refundable to the card (their outcomes come from the refund rules), and the rest to
        ``unclaimed``; a lot is never held for a second refund after the closing."""
        user_id = sorted(self.erased)[i % len(self.erased)]
        withdrawal_id = uuid4()
        before = self.app.wallet_of(user_id)
        tried = set(before.erasure_tried)
        self.app.request_erasure_refund(user_id, withdrawal_id, ERASURE_WORKER)
        wallet = self.app.wallet_of(user_id)
        hold = wallet.withdrawals.get(str(withdrawal_id))
        for lot in hold.lots if hold else ():
            assert lot not in tried, "a lot refunded twice after the closing"
            key = (user_id, withdrawal_id, UUID(lot))
            self.withdrawn.append(key)
            self.outcomes[key] = "pending"
        self.app.move_unclaimed(user_id, ERASURE_WORKER)
        after = self.app.wallet_of(user_id)
        assert after.available == 0, "a closed wallet kept usable tokens"
        assert after.unclaimed >= before.unclaimed

    # -- challenges ---------------------------------------------------------------------------

    @rule(terms=st.fixed_dictionaries(CHALLENGES))
    def create_challenge(self, terms: dict[str, Any]) -> None:
        self.draft_challenge(**terms)

    def draft_challenge(
        self,
        owner: int,
        stake: int,
        penalty: int,
        mode: str,
        quorum_pct: int,
        grace: int,
        frequency: str,
        window: tuple[str, str],
        scope: str,
        starts_in_hours: int,
        lasts_hours: int,
        max_participants: int,
        private: bool,
        proof_types: tuple[str, ...],
        publish_now: bool,
        joiners: list[int],
    ) -> None:
        """A draft; often published at once and joined by a few users (with repeats)."""
        owner_id = USERS[owner]
        starts_at = self.now().replace(minute=0) + timedelta(hours=starts_in_hours)
        created = self.app.create_challenge(
            owner_id,
            Cause.user(owner_id),
            name=f"Challenge {len(self.challenges)}",
            starts_at=starts_at,
            ends_at=starts_at + timedelta(hours=lasts_hours),
            entry_stake=stake,
            penalty_tokens=penalty,
            verification_mode=mode,
            quorum_pct=quorum_pct,
            grace=grace,
            frequency=frequency,
            window_start=window[0],
            window_end=window[1],
            timezone=TIMEZONES[owner],
            scope=scope,
            max_participants=max_participants,
            visibility="private" if private else "public",
            # Users 0..2 are invited to private challenges; user 3 never is.
            allow_list=USERS[:3] if private else (),
            proof_types=proof_types,
        )
        assert self.app.challenge(created.challenge_id).status == DRAFT
        model = ChallengeModel(created.challenge_id, owner_id, created.invite_code)
        self.challenges.append(model)
        if publish_now:
            self.publish_challenge(model, TIMEZONES[owner])
            for user in joiners:
                self.join_as(model, USERS[user], TIMEZONES[user])

    def challenge_in(self, i: int, stray: int, *statuses: str) -> ChallengeModel | None:
        """Mostly a challenge in one of ``statuses``; now and then (``stray`` 0) any at all,
        so that commands also meet challenges in the wrong state."""
        found = [
            c
            for c in self.challenges
            if stray == 0 or self.app.challenge(c.challenge_id).status in statuses
        ]
        return found[i % len(found)] if found else None

    @precondition(lambda self: self.challenges)
    @rule(
        i=pick,
        stray=strays,
        by_owner=st.booleans(),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "entry_stake": st.sampled_from([0, 5, 300, 100_001]),
                "penalty_tokens": st.sampled_from([0, 20]),
                "grace": st.integers(0, 2),
                "verification_mode": st.sampled_from(["auto", "quorum"]),
                "quorum_pct": st.sampled_from([40, 75, 100]),
                "max_participants": st.integers(1, 3),
            },
        ),
    )
    def edit_challenge(self, i: int, stray: int, by_owner: bool, changes: dict[str, Any]) -> None:
        """Only the owner edits, only in draft, only within the rules."""
        c = self.challenge_in(i, stray, DRAFT)
        if c is None:
            return
        by = c.owner if by_owner else ADMIN
        done = self.attempt(
            lambda: self.app.edit_challenge(c.challenge_id, by, Cause.user(by), **changes)
        )
        if done is not None:
            assert by_owner and self.app.challenge(c.challenge_id).status == DRAFT
            terms = self.app.challenge(c.challenge_id).terms.as_fields()
            assert all(terms[k] == v for k, v in changes.items())

    @precondition(lambda self: self.challenges)
    @rule(i=pick, stray=strays, tz=st.sampled_from(TIMEZONES))
    def publish(self, i: int, stray: int, tz: str) -> None:
        c = self.challenge_in(i, stray, DRAFT)
        if c is not None:
            self.publish_challenge(c, tz)

    def publish_challenge(self, c: ChallengeModel, tz: str) -> None:
        """The owner's publish is atomic with its own join and stake."""
        before = self.available(c.owner)
        done = self.attempt(
            lambda: self.app.publish(c.challenge_id, c.owner, Cause.user(c.owner), tz)
        )
        if done is not None:
            challenge = self.app.challenge(c.challenge_id)
            assert challenge.status == ACTIVE
            assert self.now() < challenge.terms.starts_at
            assert challenge.is_participant(c.owner)
            assert self.available(c.owner) == before - challenge.terms.entry_stake

    @precondition(lambda self: self.challenges)
    @rule(i=pick, stray=strays, user=user_index, tz=st.sampled_from(TIMEZONES))
    def join(self, i: int, stray: int, user: int, tz: str) -> None:
        """Joining locks the stake; joining again returns the participation, no 2nd stake."""
        c = self.challenge_in(i, stray, ACTIVE)
        if c is not None:
            self.join_as(c, USERS[user], tz)

    def join_as(self, c: ChallengeModel, user_id: UUID, tz: str) -> None:
        was_participant = self.app.challenge(c.challenge_id).is_participant(user_id)
        before = self.wallet(user_id)
        head = self.app.head()
        joined = self.attempt(
            lambda: self.app.join(c.invite_code.lower(), user_id, tz, Cause.user(user_id))
        )
        if joined is None:
            return
        challenge = self.app.challenge(c.challenge_id)
        assert challenge.is_participant(user_id)
        if was_participant:
            assert not joined.joined
            assert self.app.head() == head, "a repeated join recorded events"
        else:
            assert joined.joined
            terms = challenge.terms
            assert self.now() < terms.starts_at
            assert terms.visibility != "private" or user_id in terms.allow_list
            assert len(challenge.participants) <= terms.max_participants
            stake = terms.entry_stake
            assert self.available(user_id) == (before.available if before else 0) - stake
            assert self.app.wallet_of(user_id).stake_in(c.challenge_id) == stake

    @precondition(lambda self: self.challenges)
    @rule(
        i=pick,
        stray=strays,
        user=st.integers(0, 7),
        photo=st.sampled_from([None, *PHOTO_HASHES]),
    )
    def submit(self, i: int, stray: int, user: int, photo: str | None) -> None:
        """A text proof, or a photo whose fingerprint may repeat an earlier one (flagged)."""
        c = self.challenge_in(i, stray, ACTIVE)
        if c is None:
            return
        participants = list(self.app.challenge(c.challenge_id).participants)
        if stray and participants:
            user_id = UUID(participants[user % len(participants)])
        else:
            user_id = USERS[user % len(USERS)]
        self.prove(c, user_id, photo)

    def prove(self, c: ChallengeModel, user_id: UUID, photo: str | None) -> UUID | None:
        if photo is None:
            proof = ProofFacts("text", f"text/{uuid4().hex}", "text/plain", 42, "0" * 64)
        else:
            proof = ProofFacts("photo", f"photo/{uuid4().hex}", "image/jpeg", 2_048, photo)
        made = self.attempt(
            lambda: self.app.submit(c.challenge_id, user_id, proof, Cause.user(user_id))
        )
        if made is None:
            return None
        challenge = self.app.challenge(c.challenge_id)
        terms = challenge.terms
        assert challenge.is_participant(user_id)
        assert terms.starts_at <= self.now() < terms.ends_at
        assert proof.proof_type in terms.proof_types
        flagged = photo is not None and photo in c.photo_hashes
        # These photos come with a fingerprint only: no capture time (shown, not reviewed).
        undated = ("capture_time_missing",) if photo is not None else ()
        assert made.flags == (("duplicate",) if flagged else ()) + undated
        review = flagged or terms.verification_mode == "quorum"
        if review and len(challenge.participants) > 1:
            assert made.status == PENDING
        else:
            assert made.status == "accepted"
        if photo is not None:
            c.photo_hashes.add(photo)
        self.submissions.append((made.submission_id, c))
        return made.submission_id

    @precondition(lambda self: self.challenges)
    @rule(
        i=pick,
        hours=st.integers(1, 30),
        photos=st.lists(st.sampled_from([None, *PHOTO_HASHES]), min_size=4, max_size=4),
        votes=st.lists(st.sampled_from([True, False, None, None]), min_size=12, max_size=12),
    )
    def a_day_of_proofs(
        self, i: int, hours: int, photos: list[str | None], votes: list[bool | None]
    ) -> None:
        """Time moves on into a challenge still to run, every participant proves, peers vote."""
        running = [
            c
            for c in self.challenges
            if self.app.challenge(c.challenge_id).status == ACTIVE
            and self.now() < self.app.challenge(c.challenge_id).terms.ends_at
        ]
        if not running:
            return
        c = running[i % len(running)]
        challenge = self.app.challenge(c.challenge_id)
        terms = challenge.terms
        self.clock.set(max(self.now(), terms.starts_at) + timedelta(hours=hours - 1))
        participants = [UUID(p) for p in challenge.participants]
        made = []
        for user_id, photo in zip(participants, photos, strict=False):
            if photo is None and "text" not in terms.proof_types:
                photo = PHOTO_HASHES[0]
            elif "photo" not in terms.proof_types:
                photo = None
            submission_id = self.prove(c, user_id, photo)
            if submission_id is not None:
                made.append(submission_id)
        for n, submission_id in enumerate(made):
            submitter = self.app.verification(submission_id).user_id
            for m, voter_id in enumerate(participants):
                approve = votes[(n * 4 + m) % len(votes)]  # None: this peer does not vote
                pending = self.app.verification(submission_id).status == PENDING
                if approve is not None and voter_id != submitter and pending:
                    self.cast(submission_id, c, voter_id, approve)

    @precondition(lambda self: self.submissions)
    @rule(i=pick, stray=strays, voter=st.integers(0, 7), approve=st.booleans())
    def vote(self, i: int, stray: int, voter: int, approve: bool) -> None:
        """A peer's vote; a deciding rejection charges a penalty capped at what is there."""
        pending = [
            (s, c)
            for s, c in self.submissions
            if stray == 0 or self.app.verification(s).status == PENDING
        ]
        if not pending:
            return
        submission_id, c = pending[i % len(pending)]
        participants = list(self.app.challenge(c.challenge_id).participants)
        if stray:
            voter_id = UUID(participants[voter % len(participants)])
        else:
            voter_id = USERS[voter % len(USERS)]
        self.cast(submission_id, c, voter_id, approve)

    def cast(self, submission_id: UUID, c: ChallengeModel, voter_id: UUID, approve: bool) -> None:
        """One vote, refused exactly when rules §4 says so (any of the applicable reasons)."""
        verification = self.app.verification(submission_id)
        challenge = self.app.challenge(c.challenge_id)
        submitter = verification.user_id
        before = self.available(submitter)
        command = partial(self.app.vote, submission_id, voter_id, approve, Cause.user(voter_id))
        refusals: list[type[DomainError]] = []
        if challenge.status != ACTIVE or self.now() >= challenge.settles_at(SETTLEMENT_DELAY):
            refusals.append(VoteRefused)  # voting has closed
        if voter_id == submitter:
            refusals.append(OwnSubmission)
        if not challenge.is_participant(voter_id):
            refusals.append(NotParticipant)
        if verification.status != PENDING:
            refusals.append(VoteRefused)  # already decided or closed
        if str(voter_id) in (*verification.approvals, *verification.rejections):
            refusals.append(DuplicateVote)
        if refusals:
            self.refused(command, tuple(refusals))
            return
        counted = command()
        votes = len(verification.approvals) + len(verification.rejections)
        assert counted.approvals + counted.rejections == votes + 1
        if counted.status != REJECTED:
            return
        penalty = self.app.verification(submission_id).penalty
        terms = self.app.challenge(c.challenge_id).terms
        assert penalty == min(terms.penalty_tokens, before)
        assert self.available(submitter) == before - penalty

    @precondition(lambda self: self.challenges)
    @rule(i=pick, stray=strays, who=st.sampled_from(["owner", "owner", "other", "admin"]))
    def settle(self, i: int, stray: int, who: str) -> None:
        """Settling by the owner or an admin once due; by anyone else it is forbidden."""
        c = self.challenge_in(i, stray, ACTIVE)
        if c is None:
            return
        if who == "other":
            other = next(u for u in USERS if u != c.owner)
            self.refused(
                lambda: self.app.settle(c.challenge_id, other, Cause.user(other)), Forbidden
            )
            return
        before = self.app.challenge(c.challenge_id)
        was, lone = before.status, len(before.participants) < 2
        head = self.app.head()
        by, cause = (
            (c.owner, Cause.user(c.owner)) if who == "owner" else (ADMIN, Cause.admin(ADMIN))
        )
        done = self.attempt(
            lambda: self.app.settle(c.challenge_id, by, cause, is_admin=who == "admin")
        )
        challenge = self.app.challenge(c.challenge_id)
        if was == SETTLED:
            assert done is not None and self.app.head() == head, "settling twice recorded events"
        if done is not None and was != SETTLED and lone:
            # A lone stake is never forfeited: the settle cancels instead, whoever asks.
            assert challenge.status == CANCELLED and challenge.forfeited == 0
            assert self.now() >= challenge.terms.starts_at
        elif done is not None:
            assert challenge.status == SETTLED and challenge.pool == 0
            assert self.now() >= challenge.settles_at(SETTLEMENT_DELAY)

    @rule()
    def settlement_worker(self) -> None:
        """After a sweep nothing due is left open, and every settled pool is empty."""
        swept = self.app.settle_due()
        now = self.now()
        for challenge_id in swept.settled:
            assert self.app.challenge(challenge_id).pool == 0
        for c in self.challenges:
            challenge = self.app.challenge(c.challenge_id)
            if challenge.status != ACTIVE:
                continue
            assert now < challenge.settles_at(SETTLEMENT_DELAY), "a due challenge left open"
            assert now < challenge.terms.starts_at or len(challenge.participants) >= 2

    @precondition(lambda self: self.challenges)
    @rule(i=pick, stray=strays, admin=st.booleans())
    def cancel(self, i: int, stray: int, admin: bool) -> None:
        """Every stake and penalty goes back to the lots it came from."""
        c = self.challenge_in(i, stray, DRAFT, ACTIVE)
        if c is None:
            return
        challenge = self.app.challenge(c.challenge_id)
        holders = {UUID(p) for p in challenge.participants}
        staked = {u: self.app.wallet_of(u).staked for u in holders}
        by, cause = (ADMIN, Cause.admin(ADMIN)) if admin else (c.owner, Cause.user(c.owner))
        done = self.attempt(
            lambda: self.app.cancel(c.challenge_id, by, cause, is_admin=admin, reason="rain")
        )
        if done is None:
            return
        assert self.app.challenge(c.challenge_id).status == CANCELLED
        if not admin and challenge.status == ACTIVE:
            assert self.now() < challenge.terms.starts_at, "an owner cancelled after the start"
        for u in holders:
            stake = challenge.participants[str(u)].stake
            assert self.app.wallet_of(u).staked == staked[u] - stake

    # -- time -------------------------------------------------------------------------------

    @rule(
        hours=st.sampled_from([1, 2, 3, 5, 8, 12, 18, 24, 36, 48, 72, 144, 91 * 24]),
        worker_runs=st.booleans(),
    )
    def time_passes(self, hours: int, worker_runs: bool) -> None:
        """Mostly hours or days; now and then past every refund window (90 days).
        The settlement worker may run right after, as it does in production."""
        self.clock.advance(timedelta(hours=hours))
        if worker_runs:
            self.settlement_worker()

    @precondition(lambda self: self.challenges)
    @rule(
        i=pick,
        hours=st.integers(0, 200),
        after_settlement=st.booleans(),
        worker_runs=st.booleans(),
    )
    def time_reaches_a_challenge(
        self, i: int, hours: int, after_settlement: bool, worker_runs: bool
    ) -> None:
        """Jump into a running challenge (to prove), or past its settlement time."""
        c = self.challenge_in(i, 1, ACTIVE)
        if c is None:
            return
        terms = self.app.challenge(c.challenge_id).terms
        if after_settlement:
            target = terms.ends_at + SETTLEMENT_DELAY + timedelta(hours=hours % 3)
        else:
            target = terms.starts_at + (terms.ends_at - terms.starts_at) * hours // 200
        if target > self.now():
            self.clock.set(target)
        if worker_runs:
            self.settlement_worker()

    # -- what must hold after every step --------------------------------------------------------

    @invariant()
    def ledger_invariants_hold(self) -> None:
        assert_ledger_invariants(self.app)

    @invariant()
    def users_see_what_they_paid_once(self) -> None:
        for user in USERS:
            wallet = self.wallet(user)
            paid = sum(i.cents for i in self.intents.values() if i.user == user and i.credited)
            if wallet is None:
                assert paid == 0
                continue
            assert wallet.deposited == paid, f"{user}: deposited {wallet.deposited} != {paid}"
            assert wallet.available >= 0

    @invariant()
    def disputed_tokens_cannot_be_spent(self) -> None:
        """A lot under an open dispute stays frozen (or is wholly written off) until the
        dispute closes, whatever else happens to it (rules §6)."""
        for user in USERS:
            wallet = self.wallet(user)
            for dispute_id, lot_id in wallet.disputes.items() if wallet else ():
                lot = wallet.lot(lot_id)
                assert lot.frozen or lot.written_off, f"{dispute_id}: lot {lot_id} is usable"

    @invariant()
    def closed_challenges_hold_nothing(self) -> None:
        for c in self.challenges:
            challenge = self.app.challenge(c.challenge_id)
            if challenge.status in (SETTLED, CANCELLED):
                assert challenge.pool == 0


MACHINE_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)

LedgerMachine.TestCase.settings = settings(
    MACHINE_SETTINGS, max_examples=60, stateful_step_count=40
)
TestLedgerStateMachineInMemory = LedgerMachine.TestCase


class WithBystanders(GroupCommit):
    """Group commit as it runs under load: every save shares its batch with another
    command's, written first (a stranger's wallet opened), so each command's positions are
    cut from the middle of a batch and its conflicts are judged among others'."""

    def __init__(self, app: Ledger) -> None:
        super().__init__(app._insert_batch)
        self.app = app

    def _write(self, batch: list[Save]) -> None:
        wallet = Wallet.open(uuid4(), Cause.worker("bystander"), self.app.clock.now())
        stored = [self.app.mapper.to_stored_event(e) for e in wallet.collect_events()]
        bystander = Save(stored, ())
        super()._write([bystander, *batch])
        assert bystander.error is None, bystander.error


class BatchedLedgerMachine(LedgerMachine):
    """The same machine, every command's save written in a batch with another's."""

    def make_app(self, clock: AdjustableClock) -> Ledger:
        app = replaying_ledger(clock)
        app.group_commit = WithBystanders(app)
        return app


class UngroupedLedgerMachine(LedgerMachine):
    """The same machine with group commit off (``GROUP_COMMIT=off``): each save alone."""

    def make_app(self, clock: AdjustableClock) -> Ledger:
        return ReplayingLedger({"AGGREGATE_CACHE_MAXSIZE": ""}, clock=clock, group_commit=False)


BatchedLedgerMachine.TestCase.settings = settings(
    MACHINE_SETTINGS, max_examples=30, stateful_step_count=40
)
TestLedgerStateMachineInBatches = BatchedLedgerMachine.TestCase
UngroupedLedgerMachine.TestCase.settings = settings(
    MACHINE_SETTINGS, max_examples=20, stateful_step_count=30
)
TestLedgerStateMachineWithoutGroupCommit = UngroupedLedgerMachine.TestCase


class PostgresLedgerMachine(LedgerMachine):
    """The same machine with the events in PostgreSQL, one fresh schema per example."""

    def make_app(self, clock: AdjustableClock) -> Ledger:
        self.database_url = resolve_database_url(StoreSettings.from_env().database_url)
        self.schema = f"sm_{uuid.uuid4().hex[:12]}"
        ensure_schema(self.database_url, self.schema)
        db = DatabaseSettings.from_url(self.database_url, schema=self.schema)
        env = db.eventsourcing_env(create_table=True, pool_size=2, max_overflow=2)
        try:
            return Ledger(env, clock=clock)
        except BaseException:
            drop_schema(self.database_url, self.schema)
            raise

    def teardown(self) -> None:
        try:
            self.app.close()
        finally:
            drop_schema(self.database_url, self.schema)


PostgresLedgerMachine.TestCase.settings = settings(
    MACHINE_SETTINGS, max_examples=8, stateful_step_count=25
)
TestLedgerStateMachineOnPostgres = PostgresLedgerMachine.TestCase


def proven(machine: LedgerMachine, c: ChallengeModel, user: UUID, photo: str | None) -> UUID:
    submission_id = machine.prove(c, user, photo)
    assert submission_id is not None, "the proof was refused"
    return submission_id


def every_step_checked(machine: LedgerMachine) -> None:
    machine.ledger_invariants_hold()
    machine.users_see_what_they_paid_once()
    machine.disputed_tokens_cannot_be_spent()
    machine.closed_challenges_hold_nothing()


def test_a_scripted_run_through_the_rarest_paths_records_every_event_type() -> None:
    """The machine's rules, scripted through paths random runs reach only now and then: a
    capped penalty, a vote closed by settlement, a payout, a lost dispute whose loss a
    returned stake recovers, a dispute before its deposit, a refund failing later, penalties
    returned by an admin's cancellation. Every event type of the ledger is recorded."""
    m = LedgerMachine()
    try:
        owner, poor, peer, late = USERS
        m.a_running_platform(
            cents=[5_000, 300, 2_000, 2_000],
            first=dict(
                owner=0,
                stake=200,
                penalty=500,
                mode="quorum",
                quorum_pct=60,
                grace=0,
                frequency="daily",
                window=("00:00", "00:00"),
                scope="challenge_tz",
                starts_in_hours=2,
                lasts_hours=48,
                max_participants=4,
                private=False,
                proof_types=("photo", "text"),
                publish_now=True,
                joiners=[1, 2, 3, 3],
            ),
        )
        every_step_checked(m)
        main = m.challenges[0]
        start = m.app.challenge(main.challenge_id).terms.starts_at

        # A second challenge, edited in draft, whose penalty an admin's cancel gives back.
        m.draft_challenge(
            owner=2,
            stake=50,
            penalty=30,
            mode="quorum",
            quorum_pct=100,
            grace=0,
            frequency="daily",
            window=("00:00", "00:00"),
            scope="participant_local",
            starts_in_hours=1,
            lasts_hours=24,
            max_participants=2,
            private=False,
            proof_types=("text",),
            publish_now=False,
            joiners=[],
        )
        m.edit_challenge(i=1, stray=1, by_owner=True, changes={"grace": 1})
        m.publish(i=1, stray=0, tz="Europe/Paris")
        side = m.challenges[1]
        m.join_as(side, late, "UTC")
        every_step_checked(m)

        # A dispute that arrives before its deposit, then the deposit (frozen on arrival).
        m.deposit(user=2, cents=1_000, paid=False)
        m.open_dispute(i=4)
        m.deliver_again(i=4)
        m.deposit(user=2, cents=300, paid=True)
        # The owner's first deposit is disputed and lost while 200 of it is staked.
        m.open_dispute(i=0)
        m.close_dispute(i=1, won=False, part=4)
        # A dispute opened and lost before its deposit arrives: written off at the credit.
        m.deposit(user=3, cents=800, paid=False)
        m.open_dispute(i=len(m.intents) - 1)
        m.close_dispute(i=len(m.disputes) - 1, won=False, part=2)
        m.deliver_again(i=len(m.intents) - 1)
        m.adjust(user=1, credit=True, tokens=10)
        m.adjust(user=1, credit=False, tokens=10)
        every_step_checked(m)

        # Day one: four proofs; the poor user's is rejected (penalty capped at 100), the
        # late user's is left pending until settlement closes it.
        m.clock.set(start + timedelta(hours=3))
        proofs = {u: proven(m, main, u, None) for u in USERS}
        for submitter, voters, approve in (
            (owner, (peer, late), True),
            (peer, (owner, late), True),
            (poor, (owner, peer), False),
        ):
            for voter in voters:
                m.cast(proofs[submitter], main, voter, approve)
                every_step_checked(m)
        assert m.app.verification(proofs[poor]).penalty == 100
        side_proof = proven(m, side, late, None)
        m.cast(side_proof, side, peer, False)
        m.cancel(i=1, stray=1, admin=True)
        every_step_checked(m)

        # Days two and three: the owner and the peer prove (the same photo: flagged) and
        # two peers approve each.
        for at in (start + timedelta(hours=27), start + timedelta(hours=40)):
            m.clock.set(at)
            for submitter, voters in ((owner, (peer, late)), (peer, (owner, late))):
                submission_id = proven(m, main, submitter, "a" * 64)
                for voter in voters:
                    m.cast(submission_id, main, voter, True)
                    every_step_checked(m)

        # Withdrawals: one lot refunded then failing later, one refused.
        m.request_withdrawal(user=2, tokens=1_900, retried=True)
        m.refund_worker_records_outcome(i=0, stray=1, refund=True)
        m.refund_worker_records_outcome(i=0, stray=1, refund=False)
        m.refund_fails_later(i=0, stray=1)
        m.refund_outside_our_flow(i=3, part=2)
        m.open_dispute(i=2)
        m.close_dispute(i=len(m.disputes) - 1, won=True, part=4)
        every_step_checked(m)

        m.time_reaches_a_challenge(i=0, hours=0, after_settlement=True, worker_runs=True)
        every_step_checked(m)

        # An external refund failing later; the poor user erased, paid late, refunded once,
        # the refund failing: those tokens end unclaimed.
        m.external_refund_fails_later(i=len(m.external_refunds) - 1)
        m.external_refund_fails_later(i=len(m.external_refunds) - 1)
        if m.available(poor):
            m.adjust(user=1, credit=False, tokens=m.available(poor))
        m.erase(user=1, empty_first=False)
        assert poor in m.erased
        m.late_payment(i=0, cents=1_000)
        m.adjust(user=1, credit=True, tokens=7)
        m.erasure_worker(i=0)
        m.refund_worker_records_outcome(i=len(m.withdrawn) - 1, stray=1, refund=True)
        m.refund_fails_later(i=len(m.withdrawn) - 1, stray=1)
        m.erasure_worker(i=0)
        assert m.app.wallet_of(poor).unclaimed == 1_007
        every_step_checked(m)

        m.winnings_mature(user=2)
        m.request_cashout(user=2, tokens=1_500, retried=True)
        m.cashout_worker_records_outcome(i=len(m.cashouts) - 1, stray=1, made=True)
        m.transfer_reversed(i=len(m.cashouts) - 1, part=300, again=True)
        m.transfer_reversed(i=len(m.cashouts) - 1, part=100_000, again=False)
        assert m.app.wallet_of(peer).cashed_out == 0
        m.request_cashout(user=2, tokens=1_000, retried=False)
        m.cashout_worker_records_outcome(i=len(m.cashouts) - 1, stray=1, made=False)
        assert len(m.cashouts) == 2 and m.app.wallet_of(peer).cashout_pending == 0
        every_step_checked(m)
        settled = m.app.challenge(main.challenge_id)
        assert settled.status == SETTLED and settled.pool == 0
        assert sorted(settled.finishers) == sorted([str(owner), str(peer)])
        assert m.app.verification(proofs[late]).status == "expired"
        lost_lot = m.app.wallet_of(owner).lot(m.app.wallet_of(owner).deposits["pi_0"])
        assert lost_lot.loss == 0, "the returned stake recovers the dispute loss"
        assert m.app.wallet_of(peer).won == 250

        # Long after: a deposit drops the records of lots nothing can return tokens to
        # (rules §1); every invariant still holds.
        m.clock.set(m.now() + timedelta(days=400))
        for user in (0, 2, 3):
            m.deposit(user=user, cents=300, paid=True)
        every_step_checked(m)

        topics = {n.topic for n in m.app.recorder.select_notifications(1, 10_000)}
        expected = {
            cls.TOPIC
            for aggregate in (Wallet, Challenge, Verification, InviteCode)
            for cls in vars(aggregate).values()
            # Events only: a snapshot class (``Wallet.Snapshot``) has a topic too.
            if isinstance(cls, type)
            and issubclass(cls, CanMutateAggregate)
            and hasattr(cls, "TOPIC")
            and "." in cls.TOPIC
        }
        assert expected - topics == set()
    finally:
        m.teardown()


def test_a_smaller_write_off_after_a_whole_one_does_not_reopen_the_disputed_lot() -> None:
    """Found by the machine: a lot wholly written off (a full refund outside our flow) was
    flagged usable again by a later, smaller write-off, while a dispute still held it."""
    m = LedgerMachine()
    try:
        m.a_running_platform(
            cents=[300, 300],
            first=dict(
                owner=0,
                stake=0,
                penalty=0,
                mode="auto",
                quorum_pct=50,
                grace=0,
                frequency="daily",
                window=("00:00", "00:00"),
                scope="participant_local",
                starts_in_hours=1,
                lasts_hours=12,
                max_participants=4,
                private=False,
                proof_types=("text",),
                publish_now=True,
                joiners=[1],
            ),
        )
        m.open_dispute(i=1)
        m.refund_outside_our_flow(i=1, part=4)
        m.refund_outside_our_flow(i=1, part=1)
        every_step_checked(m)
        wallet = m.app.wallet_of(USERS[1])
        lot = wallet.lot(wallet.deposits["pi_1"])
        assert lot.written_off and lot.remaining == 0 and lot.loss == 75
        assert wallet.available == 0 and wallet.written_off_total == 375
    finally:
        m.teardown()
