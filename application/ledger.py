"""The ledger application: every command the platform's money obeys.

Each command loads what it needs from the event store, asks the aggregates to decide, and
makes exactly one ``save`` of every aggregate it changed — the atomic unit. A version
conflict (another command saved one of those aggregates first) rolls the whole save back;
the command is then re-run on fresh state a bounded number of times and finally refused as a
:class:`~domain.errors.ConcurrencyConflict`. No I/O happens between loading and saving, so
concurrent commands' saves share one transaction (group commit, `application.group_commit`;
``GROUP_COMMIT=off`` saves each alone), each keeping its own outcome.

A command decides first on the aggregates this process cached (``TRUSTED_CACHE``): its save
proves them current, since each version is taken once. An aggregate read and not changed is
checked before the answer, and a refusal is decided again on fresh state (decision 112).
"""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    Recording,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import resolve_topic

from application.due import DueIndex
from application.group_commit import GroupCommit, Save
from application.ports import AggregateCache, BatchPart, Clock, SystemClock
from application.receipts import (
    CashoutHeld,
    ChallengeCreated,
    Joined,
    Receipt,
    SubmissionMade,
    Swept,
    VoteCounted,
    WithdrawalHeld,
)
from application.settings import LedgerSettings
from application.transcodings import snapshot_transcodings
from application.turns import Turns
from domain import ids
from domain.aggregate import Cause, LedgerAggregate
from domain.challenge import Cancellation, Challenge
from domain.errors import (
    ConcurrencyConflict,
    DomainError,
    InvalidField,
    NotFound,
    NotSettleable,
)
from domain.invite import InviteCode
from domain.rules import make_terms
from domain.tokens import positive_tokens
from domain.used_ids import ADJUSTMENT, UsedId
from domain.values import ProofType
from domain.verification import REJECTED, ProofFacts, Verification
from domain.wallet import Wallet

log = logging.getLogger("peerpush.settlement")
T = TypeVar("T")
UNKNOWN_INVITE_CODE = "no challenge has that invite code"

A = TypeVar("A", bound=LedgerAggregate)

INVITE_ALPHABET = string.ascii_uppercase + string.digits
# The environment key naming the repository class (set by the adapters' environment).
AGGREGATE_REPOSITORY_TOPIC = "AGGREGATE_REPOSITORY_TOPIC"

# Aggregates never changed after their first event: served from the cache as they are, never
# checked against the store, and no turns taken on them.
IMMUTABLE: tuple[type[LedgerAggregate], ...] = (InviteCode, UsedId)


@dataclass(frozen=True)
class CommandOutcome:
    """How one command ended, for its log line and the command metrics.

    ``outcome``: ``done``; ``refused`` by a rule (``code`` names it); ``conflict`` when version
    conflicts outlasted the retries; ``failed`` on any other error (logged where it is handled).
    """

    command: str
    outcome: str
    code: str | None
    retries: int
    position: int | None
    seconds: float


def command_name(decide: Callable[..., object]) -> str:
    """The public command a closure was written in: ``Ledger.join.<locals>.attempt`` → join."""
    owner = getattr(decide, "__qualname__", "").split(".<locals>")[0]
    return owner.rpartition(".")[2].lstrip("_") or "command"


@dataclass
class _Reads:
    """What one attempt of a command read from the cache without checking it: ``versions``
    (id -> version decided on, not yet proven current), ``trusting`` (reads may still come
    from the cache), ``trusted`` (some did), ``saved`` (its save committed: never re-run)."""

    trusting: bool
    versions: dict[UUID, int] = field(default_factory=dict)
    trusted: bool = False
    saved: bool = False
    # The aggregates' turns this attempt holds (`application.turns`).
    turns: list[threading.RLock] = field(default_factory=list)
    # Aggregates taken out of the cache (no copy), by id, until they go back into it.
    owned: dict[UUID, LedgerAggregate] = field(default_factory=dict)

    def again(self) -> None:
        """The next attempt reads fresh state."""
        self.trusting, self.trusted, self.saved = False, False, False
        self.versions.clear()


# The reads of the command attempt running in this context (None outside a command).
_reads: ContextVar[_Reads | None] = ContextVar("ledger_reads", default=None)


class Ledger(Application[UUID]):
    """Commands over wallets, challenges and verifications, saved atomically."""

    name = "ledger"
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Wallet: 100,
        Challenge: 100,
        Verification: 50,
    }

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        settings: LedgerSettings | None = None,
        group_commit: bool = True,
        trusted_cache: bool = True,
    ) -> None:
        super().__init__(env)
        # Decide first on cached aggregates, proven current by the save (TRUSTED_CACHE).
        self.trusted_cache = trusted_cache
        # Commands of this process take turns on an aggregate rather than race for it.
        self.turns = Turns()
        self.clock: Clock = clock or SystemClock()
        self.settings = settings or LedgerSettings.defaults()
        # Concurrent commands' saves share a transaction (GROUP_COMMIT, docs/settings.md).
        self.group_commit = GroupCommit(self._insert_batch) if group_commit else None
        self._due = DueIndex(self.settings.settlement_delay)
        self._due_lock = threading.Lock()
        # Told how every command ended (the composition root adds the metrics' counter).
        self.observers: list[Callable[[CommandOutcome], None]] = []

    def construct_repository(self) -> Repository[UUID]:
        """The repository the environment names (``AGGREGATE_REPOSITORY_TOPIC``: the
        adapters' `AggregateCache`, see ``adapters.aggregate_cache``), else the library's."""
        library = super().construct_repository()
        topic = self.env.get(AGGREGATE_REPOSITORY_TOPIC)
        if not topic:
            return library
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        repository: Repository[UUID] = resolve_topic(topic)(
            event_store=library.event_store,
            snapshot_store=library.snapshot_store,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=library.fastforward,
            fastforward_skipping=library.fastforward_skipping,
            deepcopy_from_cache=library.deepcopy_from_cache,
            immutable=IMMUTABLE,
        )
        return repository

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)  # type: ignore[arg-type]  # the library annotates a JSONTranscoder
        for transcoding in snapshot_transcodings():
            transcoder.register(transcoding)  # type: ignore[attr-defined]  # register() is JSONTranscoder's, not the base class's

    # -- wallets: deposits, withdrawals, adjustments, disputes --------------------------

    def open_wallet(self, user_id: UUID, cause: Cause) -> Receipt:
        def attempt() -> Receipt:
            return self._save(self._wallet(user_id, cause))

        return self._retrying(attempt)

    def credit_deposit(
        self, user_id: UUID, payment_intent_id: str, cents_paid: int, cause: Cause
    ) -> Receipt:
        """Credit a paid PaymentIntent once, however often and in whatever order it arrives."""
        if not payment_intent_id:
            raise InvalidField("a payment intent id is required")

        def attempt() -> Receipt:
            wallet = self._wallet(user_id, cause)
            credited = wallet.credit_deposit(
                payment_intent_id,
                cents_paid,
                self.settings.token_price_usd_cents,
                self.settings.refund_window,
                cause,
                self._now(),
            )
            if credited:  # a repeated delivery records nothing at all
                wallet.drop_old_lot_records(self.settings.dispute_window, cause, self._now())
            return self._save(wallet)

        return self._retrying(attempt)

    def request_withdrawal(
        self, user_id: UUID, withdrawal_id: UUID, tokens: int, cause: Cause
    ) -> WithdrawalHeld:
        positive_tokens(tokens)

        def attempt() -> WithdrawalHeld:
            wallet = self._existing_wallet(user_id)
            lots = wallet.request_withdrawal(withdrawal_id, tokens, cause, self._now())
            receipt = self._save(wallet)
            return WithdrawalHeld(receipt.position, withdrawal_id, lots)

        return self._retrying(attempt)

    def record_refund(
        self, user_id: UUID, withdrawal_id: UUID, lot_id: UUID, refund_id: str, cause: Cause
    ) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.record_refund(withdrawal_id, lot_id, refund_id, cause, at)
        )

    def refuse_refund(
        self, user_id: UUID, withdrawal_id: UUID, lot_id: UUID, reason: str, cause: Cause
    ) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.refuse_refund(withdrawal_id, lot_id, reason, cause, at)
        )

    def fail_refund(
        self, user_id: UUID, withdrawal_id: UUID, lot_id: UUID, cause: Cause
    ) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.fail_refund(withdrawal_id, lot_id, cause, at)
        )

    # -- cash-outs through Stripe Connect (rules §2) --------------------------------------

    def request_cashout(
        self, user_id: UUID, cashout_id: UUID, tokens: int, cause: Cause
    ) -> CashoutHeld:
        """Phase one: hold payout and adjustment lots past their hold for one transfer.

        Whether the user has a Connect account with payouts enabled is checked before (it
        lives in the users table, not in the stream)."""
        positive_tokens(tokens)

        def attempt() -> CashoutHeld:
            wallet = self._existing_wallet(user_id)
            hold = wallet.request_cashout(
                cashout_id,
                tokens,
                self.settings.token_price_usd_cents,
                self.settings.cashout_limits,
                cause,
                self._now(),
            )
            receipt = self._save(wallet)
            lots = tuple((UUID(str(lot)), int(n)) for lot, n in hold.lots)
            return CashoutHeld(receipt.position, cashout_id, hold.tokens, hold.cents, lots)

        return self._retrying(attempt)

    def settle_cashout(
        self, user_id: UUID, cashout_id: UUID, transfer_id: str, cause: Cause
    ) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.settle_cashout(cashout_id, transfer_id, cause, at)
        )

    def fail_cashout(self, user_id: UUID, cashout_id: UUID, reason: str, cause: Cause) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.fail_cashout(cashout_id, reason, cause, at)
        )

    def reverse_cashout(
        self, user_id: UUID, cashout_id: UUID, reversal_id: str, tokens: int, cause: Cause
    ) -> int:
        """A transfer reversed (whole or partly): the reversed tokens return to their lots.
        Returns the tokens given back (0 when this reversal was already recorded)."""
        back: list[int] = []
        self._wallet_command(
            user_id,
            lambda w, at: back.append(
                w.reverse_cashout(cashout_id, reversal_id, tokens, cause, at)
            ),
        )
        return back[-1]

    def adjust(
        self,
        user_id: UUID,
        direction: str,
        tokens: int,
        reason: str,
        adjustment_id: UUID,
        cause: Cause,
    ) -> Receipt:
        """An admin's correction: a credit makes an adjustment lot, a debit consumes FIFO."""
        positive_tokens(tokens)
        if direction not in ("credit", "debit"):
            raise InvalidField("direction must be credit or debit")

        marker_id = ids.used_id(ids.wallet_id(user_id), ADJUSTMENT, str(adjustment_id))
        tries = itertools.count()

        def attempt() -> Receipt:
            # A repeat: its marker is known here, or (after a save collided with it) read.
            if self._used(marker_id, read=next(tries) > 0):
                return Receipt(self._head())
            wallet = self._wallet(user_id, cause)
            at = self._now()
            if direction == "credit":
                marker = wallet.credit_adjustment(adjustment_id, tokens, reason, cause, at)
                if marker is not None:
                    wallet.drop_old_lot_records(self.settings.dispute_window, cause, at)
            else:
                marker = wallet.debit_adjustment(adjustment_id, tokens, reason, cause, at)
            return self._save(wallet, *([marker] if marker else []))

        return self._retrying(attempt)

    def open_dispute(
        self, user_id: UUID, payment_intent_id: str, dispute_id: str, cause: Cause
    ) -> Receipt:
        def attempt() -> Receipt:
            wallet = self._wallet(user_id, cause)
            wallet.open_dispute(payment_intent_id, dispute_id, cause, self._now())
            return self._save(wallet)

        return self._retrying(attempt)

    def close_dispute(
        self, user_id: UUID, dispute_id: str, won: bool, cents: int, cause: Cause
    ) -> Receipt:
        def decide(wallet: Wallet, at: datetime) -> None:
            if won:
                wallet.win_dispute(dispute_id, cause, at)
            else:
                wallet.lose_dispute(dispute_id, cents, cause, at)

        return self._wallet_command(user_id, decide)

    def write_off_external_refund(
        self, user_id: UUID, payment_intent_id: str, refund_id: str, cents: int, cause: Cause
    ) -> Receipt:
        """A refund made outside our flow is written off like a lost dispute (rules §6)."""

        def decide(wallet: Wallet, at: datetime) -> None:
            lot_id = wallet.deposits.get(payment_intent_id)
            if lot_id is None:
                raise NotFound(f"no deposit for {payment_intent_id}")
            wallet.write_off(UUID(lot_id), refund_id, "external_refund", cents, cause, at)

        return self._wallet_command(user_id, decide)

    def reverse_external_refund(self, user_id: UUID, refund_id: str, cause: Cause) -> bool:
        """An external refund, written off, ended failed or canceled: its tokens come back."""
        done: list[bool] = []
        self._wallet_command(
            user_id, lambda w, at: done.append(w.reverse_write_off(refund_id, cause, at))
        )
        return done[-1]

    # -- an erased owner's wallet (rules §7) ---------------------------------------------

    def close_wallet(self, user_id: UUID, cause: Cause) -> Receipt:
        """Close the wallet of a user being erased (opened first if they never had one, so
        a payment arriving later still finds it closed)."""

        def attempt() -> Receipt:
            wallet = self._wallet(user_id, cause)
            wallet.close(cause, self._now())
            return self._save(wallet)

        return self._retrying(attempt)

    def request_erasure_refund(self, user_id: UUID, withdrawal_id: UUID, cause: Cause) -> Receipt:
        return self._wallet_command(
            user_id, lambda w, at: w.request_erasure_refund(withdrawal_id, cause, at)
        )

    def move_unclaimed(self, user_id: UUID, cause: Cause) -> Receipt:
        return self._wallet_command(user_id, lambda w, at: w.move_unclaimed(cause, at))

    # -- challenges ---------------------------------------------------------------------

    def create_challenge(
        self, owner_id: UUID, cause: Cause, challenge_id: UUID | None = None, **terms: Any
    ) -> ChallengeCreated:
        """Draft a challenge and claim a fresh invite code for it."""
        checked = make_terms(self.settings.challenge_limits, now=self._now(), **terms)
        # A new id cannot be drafted yet: it is looked up only once a save may have landed.
        looked_up = itertools.count(1 if challenge_id else 0)
        challenge_id = challenge_id or uuid4()

        def attempt() -> ChallengeCreated:
            if next(looked_up) and (existing := self._maybe(Challenge, challenge_id)):
                return ChallengeCreated(self._head(), existing.id, existing.invite_code)
            code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(6))
            at = self._now()
            challenge = Challenge.draft(challenge_id, owner_id, code, checked, cause, at)
            invite = InviteCode.claim(code, challenge_id, cause, at)
            receipt = self._save(challenge, invite)
            return ChallengeCreated(receipt.position, challenge_id, code)

        return self._retrying(attempt)

    def edit_challenge(self, challenge_id: UUID, by: UUID, cause: Cause, **changes: Any) -> Receipt:
        def attempt() -> Receipt:
            challenge = self._get(Challenge, challenge_id)
            merged = {**challenge.terms.as_fields(), **changes}
            terms = make_terms(self.settings.challenge_limits, now=self._now(), **merged)
            challenge.edit(by, terms, cause, self._now())
            return self._save(challenge)

        return self._retrying(attempt)

    def publish(
        self, challenge_id: UUID, by: UUID, cause: Cause, timezone: str | None = None
    ) -> Receipt:
        """Open the challenge, atomically with the owner's own join and stake."""

        def attempt() -> Receipt:
            challenge = self._get(Challenge, challenge_id)
            wallet = self._wallet(by, cause)
            at = self._now()
            stake = challenge.publish(by, timezone, cause, at)
            wallet.lock_stake(challenge_id, stake, cause, at)
            return self._save(challenge, wallet)

        return self._retrying(attempt)

    def join(self, invite_code: str, user_id: UUID, timezone: str, cause: Cause) -> Joined:
        """Join by invite code; the stake is locked in the same save as the join.

        A code the user may not use (a draft's, a private challenge's they are not invited to)
        fails exactly as an unknown code does: `NotFound` with the same message.
        """
        try:
            invite = self._maybe(InviteCode, ids.invite_code_id(invite_code.strip().upper()))
        except InvalidField:
            invite = None
        if invite is None:
            raise NotFound(UNKNOWN_INVITE_CODE)

        def attempt() -> Joined:
            challenge = self._get(Challenge, invite.challenge_id)
            if not challenge.invite_reveals_to(user_id):
                raise NotFound(UNKNOWN_INVITE_CODE)
            wallet = self._wallet(user_id, cause)
            at = self._now()
            joined = challenge.join(user_id, timezone, cause, at)
            if joined:
                wallet.lock_stake(challenge.id, challenge.terms.entry_stake, cause, at)
            receipt = self._save(challenge, wallet)
            return Joined.recorded(challenge, user_id, receipt.position, joined)

        return self._retrying(attempt)

    def cancel(
        self,
        challenge_id: UUID,
        by: UUID | None,
        cause: Cause,
        *,
        is_admin: bool = False,
        reason: str = "",
    ) -> Receipt:
        """Cancel, giving every stake and penalty back to the lots it came from."""

        def attempt() -> Receipt:
            challenge = self._get(Challenge, challenge_id)
            at = self._now()
            participants = challenge.cancel(by, is_admin, reason, cause, at)
            wallets = [self._wallet(p.user_id, cause) for p in participants]
            for wallet in wallets:
                wallet.return_holds(challenge_id, cause, at)
            return self._save(challenge, *wallets)

        return self._retrying(attempt)

    def submit(
        self, challenge_id: UUID, user_id: UUID, proof: ProofFacts, cause: Cause
    ) -> SubmissionMade:
        """Record a proof in its slot: auto-accepted, or sent to peer review."""

        def attempt() -> SubmissionMade:
            challenge = self._get(Challenge, challenge_id)
            at = self._now()
            made = challenge.receive_submission(
                user_id,
                proof.proof_type,
                proof.photo if proof.proof_type == ProofType.PHOTO else None,
                cause,
                at,
                self.settings.photo_rules,
            )
            verification = Verification.submit(
                made.submission_id,
                challenge_id,
                user_id,
                made.slot,
                proof,
                made.flags,
                made.eligible,
                challenge.terms.quorum_pct,
                made.status,
                cause,
                at,
                reasons=made.reasons,
            )
            receipt = self._save(challenge, verification)
            return SubmissionMade.recorded(verification, receipt.position)

        return self._retrying(attempt)

    def vote(self, submission_id: UUID, voter_id: UUID, approve: bool, cause: Cause) -> VoteCounted:
        """Count a peer's vote; the deciding vote records the verdict and any penalty."""

        def attempt() -> VoteCounted:
            verification = self._get(Verification, submission_id)
            challenge = self._get(Challenge, verification.challenge_id)
            at = self._now()
            challenge.check_votes_accepted(at, self.settings.settlement_delay)
            verdict = verification.vote(
                voter_id, approve, challenge.is_participant(voter_id), cause, at
            )
            changed: list[LedgerAggregate] = [verification]
            if verdict is not None:
                penalty = 0
                if verdict == REJECTED and challenge.terms.penalty_tokens:
                    wallet = self._wallet(verification.user_id, cause)
                    penalty = wallet.charge_penalty(
                        challenge.id, submission_id, challenge.terms.penalty_tokens, cause, at
                    )
                    changed.append(wallet)
                verification.decide(verdict, penalty, cause, at)
                challenge.record_verdict(submission_id, verdict, penalty, cause, at)
                changed.append(challenge)
            receipt = self._save(*changed)
            return VoteCounted.recorded(verification, receipt.position)

        return self._retrying(attempt)

    def settle(
        self, challenge_id: UUID, by: UUID | None, cause: Cause, *, is_admin: bool = False
    ) -> Receipt:
        """Divide the pool; saves the challenge, every participant's wallet and every
        still-pending verification together, so a racing join or vote lands before it or
        not at all. Settling twice is a no-op. A challenge that started with fewer than two
        participants is cancelled instead, its stakes returned in the same save."""
        return self._settle(challenge_id, by, cause, is_admin=is_admin)[0]

    def _settle(
        self, challenge_id: UUID, by: UUID | None, cause: Cause, *, is_admin: bool = False
    ) -> tuple[Receipt, str]:
        """The settle command; also says what it did: ``settled``, ``cancelled`` or ``none``."""

        def attempt() -> tuple[Receipt, str]:
            challenge = self._get(Challenge, challenge_id)
            at = self._now()
            outcome = challenge.settle(
                self.settings.platform_fee_bps,
                self.settings.settlement_delay,
                cause,
                at,
                by=by,
                is_admin=is_admin,
            )
            if outcome is None:
                return Receipt(self._head()), "none"
            changed: list[LedgerAggregate] = [challenge]
            if isinstance(outcome, Cancellation):
                for participant in outcome.participants:
                    wallet = self._wallet(participant.user_id, cause)
                    wallet.return_holds(challenge_id, cause, at)
                    changed.append(wallet)
                return self._save(*changed), "cancelled"
            for result in outcome.results:
                wallet = self._wallet(result.user_id, cause)
                wallet.settle_stake(challenge_id, result.share, cause, at)
                changed.append(wallet)
            for submission_id in outcome.pending_submissions:
                verification = self._get(Verification, submission_id)
                verification.close(cause, at)
                changed.append(verification)
            for submission_id in outcome.accepted_at_close:
                verification = self._get(Verification, submission_id)
                verification.close(cause, at, accepted=True)
                changed.append(verification)
            return self._save(*changed), "settled"

        return self._retrying(attempt)

    def settle_due(self, now: datetime | None = None) -> Swept:
        """The settlement worker's pass: settle what is due, cancel what cannot run.

        Only challenges whose due time has passed are loaded (see :class:`DueIndex`), so a
        pass costs what is due, not what is open. Each challenge is its own command: one
        that fails, with any error, is logged, reported in ``failed`` and retried on the
        next pass, and does not hold up the others.
        """
        now = now or self._now()
        settled: list[UUID] = []
        cancelled: list[UUID] = []
        failed: list[UUID] = []
        retry: list[tuple[datetime, UUID]] = []
        cause = Cause.worker("settlement", f"sweep:{now.isoformat()}")
        with self._due_lock:
            self._due.refresh(self._notifications, self.mapper.to_domain_event)
            due = self._due.pop_due(now)
        for when, challenge_id in due:
            try:
                _, done = self._settle(challenge_id, None, cause)
            except NotSettleable:
                # Closed meanwhile (then the index drops it), or not due by the ledger's own
                # clock yet: look again next pass.
                retry.append((when, challenge_id))
                continue
            except Exception:
                log.exception("settling challenge %s failed; retried next pass", challenge_id)
                failed.append(challenge_id)
                retry.append((when, challenge_id))
                continue
            if done == "settled":
                settled.append(challenge_id)
            elif done == "cancelled":
                cancelled.append(challenge_id)
        with self._due_lock:
            self._due.push_back(retry)
        return Swept(self._head(), tuple(settled), tuple(cancelled), tuple(failed), len(due))

    # -- reading the store ----------------------------------------------------------------

    def challenges_joined_by(self, user_id: UUID) -> list[UUID]:
        """Open challenges the user takes part in (from the aggregates, not a read model)."""
        return [
            challenge_id
            for challenge_id in self.open_challenges()
            if self._get(Challenge, challenge_id).is_participant(user_id)
        ]

    def open_challenges(self) -> list[UUID]:
        """Published challenges not yet settled or cancelled, from the stream itself.

        Read incrementally, like the due index it comes from: a cache of the stream,
        rebuilt from scratch by a new process, so no other process depends on it.
        """
        with self._due_lock:
            self._due.refresh(self._notifications, self.mapper.to_domain_event)
            return self._due.open_ids()

    def wallet_of(self, user_id: UUID) -> Wallet:
        return self._existing_wallet(user_id)

    def challenge(self, challenge_id: UUID) -> Challenge:
        return self._get(Challenge, challenge_id)

    def verification(self, submission_id: UUID) -> Verification:
        return self._get(Verification, submission_id)

    def head(self) -> int:
        return self._head()

    def heard_of(self, aggregate_id: UUID, version: int) -> None:
        """Another process (or this one) committed ``version`` of an aggregate: a cached
        copy older than that is dropped, so the next command reads it afresh."""
        if cache := self._cache:
            cache.forget(aggregate_id, older_than=version)

    # -- plumbing -------------------------------------------------------------------------

    def _notifications(
        self, topics: tuple[str, ...], page: int = 1000, start: int = 1
    ) -> Iterator[Any]:
        while True:
            batch = self.recorder.select_notifications(start, page, topics=topics)
            yield from batch
            if len(batch) < page:
                return
            start = batch[-1].id + 1

    def _now(self) -> datetime:
        return self.clock.now()

    def _head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def _save(self, *aggregates: LedgerAggregate) -> Receipt:
        # The recorder receives the aggregates this save changes too: an HTTP request's
        # idempotent response is built from them and stored in the same transaction
        # (adapters/atomic_responses.py). Only the changed ones, so a response can tell what
        # the command did (a re-join that only opens a wallet did not join).
        changed = tuple(a for a in aggregates if a.pending_events)
        reads = _reads.get()
        if reads is not None:
            # What the save will not prove current (read here, not changed) is checked now.
            written = {a.id for a in changed}
            self._verify({k: v for k, v in reads.versions.items() if k not in written})
            reads.versions.clear()
            for aggregate in changed:  # back in the cache only if committed (below)
                reads.owned.pop(aggregate.id, None)
        receipt = self._write(aggregates, changed)
        if reads is not None:
            reads.saved, reads.trusting = True, False
        if cache := self._cache:
            for aggregate in changed:
                cache.remember(aggregate)
            if reads is not None:
                self._give_back(reads, current=True)
        return receipt

    def _give_back(self, reads: _Reads, *, current: bool) -> None:
        """Put back what the attempt took out of the cache: unchanged ones, if ``current``; the
        others stay out (the next command reads them from the store)."""
        cache = self._cache
        for aggregate in reads.owned.values():
            if cache is not None and current and not aggregate.pending_events:
                cache.remember(aggregate)
        reads.owned.clear()

    def _write(
        self, aggregates: Sequence[LedgerAggregate], changed: tuple[LedgerAggregate, ...]
    ) -> Receipt:
        if self.group_commit is None:
            recordings = self.save(*aggregates, saved_aggregates=changed)
            if not recordings:
                return Receipt(self._head())
            return Receipt(recordings[-1].notification.id)
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:  # as `collect_events` does, without its protocol checks
            processing.events += aggregate.collect_events()
            processing.aggregates[aggregate.id] = aggregate
        if not processing.events:
            return Receipt(self._head())
        # Encoded here, in the command's own thread: the batch's writer only writes.
        stored = [self.mapper.to_stored_event(e) for e in processing.events]
        ids = self.group_commit.submit(Save(stored, changed))
        recordings = [
            Recording(e, Notification(s.originator_id, s.originator_version, s.topic, s.state, n))
            for e, s, n in zip(processing.events, stored, ids, strict=True)
        ]
        # As `Application.save` does after its commit.
        self._take_snapshots(processing)
        self._notify(recordings)
        return Receipt(ids[-1])

    def _take_snapshots(self, processing: ProcessingEvent[UUID]) -> None:
        """As the library's, but taken from the aggregate in hand when it is at the snapshot's
        version (the same state: apply steps only assign), not rebuilt from the store."""
        for event in processing.events:
            found = processing.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(found))
            if self.snapshots is None or not interval or event.originator_version % interval:
                continue
            if isinstance(found, LedgerAggregate) and found.version == event.originator_version:
                self.snapshots.put([type(found).Snapshot.take(found)])
            else:
                self.take_snapshot(event.originator_id, event.originator_version)

    def _insert_batch(
        self, stored: Sequence[StoredEvent], parts: Sequence[BatchPart]
    ) -> Sequence[int] | None:
        return self.recorder.insert_events(stored, batch=parts)

    def _get(self, cls: type[A], aggregate_id: UUID) -> A:
        found = self._maybe(cls, aggregate_id)
        if found is None:
            raise NotFound(f"no {cls.__name__.lower()} {aggregate_id}")
        return found

    @cached_property
    def _cache(self) -> AggregateCache | None:
        # Looked up once: a runtime protocol check costs more than a command's decision.
        repository = self.repository
        return repository if isinstance(repository, AggregateCache) else None

    def _maybe(self, cls: type[A], aggregate_id: UUID) -> A | None:
        reads = _reads.get()
        aggregate: object = None
        turn = False
        if reads is not None and not issubclass(cls, IMMUTABLE):
            turn = self.turns.take(aggregate_id, reads.turns)
        cache = self._cache
        if reads is not None and aggregate_id in reads.owned:
            aggregate = reads.owned[aggregate_id]
        elif reads is not None and reads.trusting and cache is not None:
            # With its turn, no other command here can take it: taken out, changed in place.
            aggregate = cache.check_out(aggregate_id) if turn else cache.cached(aggregate_id)
            if turn and isinstance(aggregate, LedgerAggregate):
                reads.owned[aggregate_id] = aggregate
            if isinstance(aggregate, LedgerAggregate) and not isinstance(aggregate, IMMUTABLE):
                reads.trusted = True
                reads.versions.setdefault(aggregate_id, aggregate.version)
        if aggregate is None:
            try:
                if turn and cache is not None and reads is not None:
                    # Owned by this attempt until it ends, as if checked out.
                    aggregate = reads.owned[aggregate_id] = cache.take_out(aggregate_id)
                else:
                    aggregate = self.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        if not isinstance(aggregate, cls):
            return None
        return aggregate

    def _used(self, marker_id: UUID, *, read: bool) -> bool:
        """Whether a request id was already acted on (its ``UsedId`` marker exists).

        A first attempt only asks the aggregate cache, so a new id (the usual case) costs no
        round trip; a repeat the cache does not know collides with its marker on save, and
        the retry (``read``) finds it in the store."""
        if read:
            return self._maybe(UsedId, marker_id) is not None
        try:
            return isinstance(
                self.repository.cache.get(marker_id) if self.repository.cache else None, UsedId
            )
        except KeyError:
            return False

    def _wallet(self, user_id: UUID, cause: Cause) -> Wallet:
        """The user's wallet, opened (in the same save) if this is its first movement."""
        return self._maybe(Wallet, ids.wallet_id(user_id)) or Wallet.open(
            user_id, cause, self._now()
        )

    def _existing_wallet(self, user_id: UUID) -> Wallet:
        wallet = self._maybe(Wallet, ids.wallet_id(user_id))
        if wallet is None:
            raise NotFound("no wallet for that user")
        return wallet

    def _wallet_command(
        self, user_id: UUID, decide: Callable[[Wallet, datetime], object]
    ) -> Receipt:
        def attempt() -> Receipt:
            wallet = self._existing_wallet(user_id)
            decide(wallet, self._now())
            return self._save(wallet)

        return self._retrying(attempt, command_name(decide))

    def _retrying(self, attempt: Callable[[], T], name: str | None = None) -> T:
        """Re-run a command on fresh state after a version conflict, a bounded number of
        times with jittered backoff, then refuse it.

        Every command passes here once, so here it is logged (one line: its outcome, the
        retries it took and the stream position) and counted (``observers``).
        """
        name = name or command_name(attempt)
        retries = self.settings.command_retries
        started = time.perf_counter()
        n = 0
        reads = _Reads(trusting=self.trusted_cache)
        token = _reads.set(reads)
        try:
            for n in range(retries + 1):
                try:
                    current = False
                    try:
                        result = attempt()
                        if reads.versions:  # decided on cached state and saved nothing
                            self._verify(reads.versions)
                        current = True
                    except DomainError:
                        current = True  # a refusal changed nothing
                        raise
                    finally:
                        self._give_back(reads, current=current)
                        self.turns.give_back(reads.turns)
                except IntegrityError:
                    if n == retries:
                        break
                    if not reads.trusted:
                        time.sleep(random.uniform(0, min(0.05, 0.001 * 2**n)))
                    # Else the cache was behind: re-run at once, on fresh state.
                    reads.again()
                except DomainError:
                    if not reads.trusted or reads.saved or n == retries:
                        raise
                    reads.again()  # a refusal stands only when decided on fresh state
                else:
                    self._ended(name, "done", None, n, _position(result), started)
                    return result
            raise ConcurrencyConflict("too many concurrent changes; try again")
        except ConcurrencyConflict as e:
            self._ended(name, "conflict", e.code, n, None, started)
            raise
        except DomainError as e:
            self._ended(name, "refused", e.code, n, None, started)
            raise
        except Exception as e:
            self._ended(name, "failed", type(e).__name__, n, None, started)
            raise
        finally:
            _reads.reset(token)

    def _verify(self, versions: Mapping[UUID, int]) -> None:
        """Raise a version conflict if any of these aggregates has changed past the version
        a command decided on (one read of the store each; usually none or one)."""
        for aggregate_id, version in versions.items():
            if self.recorder.select_events(aggregate_id, gt=version, limit=1):
                if cache := self._cache:
                    cache.forget(aggregate_id)
                raise IntegrityError(f"{aggregate_id} changed since this command read it")

    def _ended(
        self,
        command: str,
        outcome: str,
        code: str | None,
        retries: int,
        position: int | None,
        started: float,
    ) -> None:
        ended = CommandOutcome(
            command, outcome, code, retries, position, time.perf_counter() - started
        )
        for observe in self.observers:
            observe(ended)


def _position(result: object) -> int | None:
    """The stream position a command's answer carries (``_settle`` answers a pair)."""
    if isinstance(result, tuple) and result:
        result = result[0]
    return result.position if isinstance(result, Receipt) else None
