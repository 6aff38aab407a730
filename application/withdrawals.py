"""The withdrawal worker: phase two of a withdrawal, one Stripe refund per lot (rules §2, §6).

Each pass finds the withdrawal lots without an outcome and gives each one:

1. Look the refund up by our metadata (``withdrawal_id``, ``lot_id``). The worker cannot know
   whether an earlier pass (or a copy that crashed) already called Stripe, and Stripe keeps
   idempotency keys for only 24 h and replays a cached error, so it always looks first.
2. None found: a frozen or written-off (disputed) lot is refused without calling Stripe;
   otherwise one refund is made, outside any database transaction, with the idempotency key
   ``{withdrawal_id}:{lot_id}`` and our ids in its metadata.
3. Record the outcome: refunded (with the refund id) if Stripe accepted it, refused (its tokens
   back to the lot) if Stripe said no for good. An unknown outcome (network, Stripe down)
   records nothing: the next pass looks the refund up again.

Where the work comes from: the event stream itself, not a read model. The worker follows
``WithdrawalRequested`` notifications from the last position it read and keeps the wallets
named there until their holds are settled; the wallet aggregate decides what is pending. So a
lagging, broken or rebuilding projection never delays or misleads a refund, and a refund is
only ever attempted after the event that authorises it is committed (the stream's order of
commits is its order of positions: the event store serialises inserts).

Closed wallets (rules §7, an erased owner): the worker also follows ``Wallet.Closed`` and the
events that put tokens into a wallet. Each pass, a closed wallet holding tokens gets, as actor
``worker:erasure``, one refund-withdrawal of its refundable deposit lots (each lot is refunded
to the card at most once after the closing), and whatever no refund returns (not refundable,
refused, failed later) moves to the platform's ``unclaimed`` account.

While ``PAYOUTS_PAUSED`` is set a pass does nothing (``paused``): requested withdrawals wait,
none is refused or lost, and the next pass after unpausing resumes them.

Several copies may run: a PostgreSQL advisory lock lets one work per pass while the others
skip, and recording an outcome twice is refused by the wallet (``OutcomeAlreadyRecorded``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from uuid import UUID

from application.ledger import Ledger
from application.ports import Locks, PaymentGateway, PaymentRefused, PaymentUnavailable, Refund
from domain import ids
from domain.aggregate import Cause
from domain.errors import DomainError, OutcomeAlreadyRecorded
from domain.tokens import Lot
from domain.wallet import Wallet, WithdrawalHold
from domain.wallet_state import LotOutcome

log = logging.getLogger("peerpush.withdrawals")

LOCK_NAME = "withdrawal-worker"
PAGE = 1000
ERASURE = Cause.worker("erasure")

# Events after which a closed wallet may hold tokens that are nobody's to spend.
TOKENS_ARRIVE = (
    Wallet.Closed.TOPIC,
    Wallet.DepositCredited.TOPIC,
    Wallet.AdjustmentCredited.TOPIC,
    Wallet.LotRefundRefused.TOPIC,
    Wallet.RefundFailed.TOPIC,
    Wallet.LotUnfrozen.TOPIC,
    Wallet.LotWrittenOff.TOPIC,
    Wallet.WriteOffReversed.TOPIC,
    Wallet.HoldsReturned.TOPIC,
    Wallet.StakeSettled.TOPIC,
    Wallet.CashoutFailed.TOPIC,
    Wallet.CashoutReversed.TOPIC,
)


@dataclass
class WithdrawalPass:
    """What one pass did (for logs, metrics and tests)."""

    worked: bool = True
    paused: bool = False
    refunded: list[tuple[UUID, UUID]] = field(default_factory=list)
    refused: list[tuple[UUID, UUID]] = field(default_factory=list)
    unresolved: list[tuple[UUID, UUID]] = field(default_factory=list)
    unclaimed: list[tuple[UUID, int]] = field(default_factory=list)  # (wallet, tokens)
    erasure_refunds: list[UUID] = field(default_factory=list)  # closed wallets' refunds held


@contextlib.contextmanager
def _logged(what: str, wallet_id: UUID) -> Iterator[None]:
    """A refused command for one closed wallet (a concurrent change) waits for the next pass
    instead of stopping the refunds of every other wallet."""
    try:
        yield
    except DomainError as e:
        log.warning("%s closed wallet %s retried next pass: %s", what, wallet_id, e)


class WithdrawalWorker:
    """Makes and records the refunds of requested withdrawals; resumable and idempotent."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: PaymentGateway,
        locks: Locks,
        *,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ledger, self.gateway, self.locks = ledger, gateway, locks
        self.paused = paused
        self._position = 0  # the last stream position read
        self._wallets: set[UUID] = set()  # wallets with (possibly) unsettled withdrawals
        self._closed: set[UUID] = set()  # wallets of erased users
        self._to_clear: set[UUID] = set()  # closed wallets that may hold tokens

    def run_pass(self) -> WithdrawalPass:
        if self.paused():
            return WithdrawalPass(worked=False, paused=True)
        with self.locks.try_hold(LOCK_NAME) as mine:
            if not mine:
                return WithdrawalPass(worked=False)
            self._discover()
            done = WithdrawalPass()
            for wallet_id in sorted(self._to_clear):
                with _logged("erasure refund of", wallet_id):
                    self._request_erasure_refund(wallet_id, done)
            for wallet_id in sorted(self._wallets):
                if self._work_wallet(wallet_id, done):
                    self._wallets.discard(wallet_id)
            for wallet_id in sorted(self._to_clear):
                with _logged("unclaimed move of", wallet_id):
                    if self._move_unclaimed(wallet_id, done):
                        self._to_clear.discard(wallet_id)
            return done

    def __call__(self) -> WithdrawalPass:
        return self.run_pass()

    def _discover(self) -> None:
        topics = (Wallet.WithdrawalRequested.TOPIC, *TOKENS_ARRIVE)
        while True:
            batch = self.ledger.recorder.select_notifications(
                self._position + 1, PAGE, topics=topics
            )
            for notification in batch:
                wallet_id = UUID(str(notification.originator_id))
                if notification.topic == Wallet.WithdrawalRequested.TOPIC:
                    self._wallets.add(wallet_id)
                if notification.topic == Wallet.Closed.TOPIC:
                    self._closed.add(wallet_id)
                if wallet_id in self._closed:
                    self._to_clear.add(wallet_id)
                self._position = notification.id
            if len(batch) < PAGE:
                return

    def _wallet(self, wallet_id: UUID) -> Wallet:
        wallet: object = self.ledger.repository.get(wallet_id)
        assert isinstance(wallet, Wallet), f"{wallet_id} is not a wallet"
        return wallet

    def _request_erasure_refund(self, wallet_id: UUID, done: WithdrawalPass) -> None:
        """Hold a closed wallet's still refundable deposit lots for their one refund."""
        wallet = self._wallet(wallet_id)
        if wallet.erasure_refundable(self.ledger.clock.now()):
            withdrawal_id = ids.erasure_withdrawal_id(wallet_id, wallet.version)
            self.ledger.request_erasure_refund(wallet.user_id, withdrawal_id, ERASURE)
            self._wallets.add(wallet_id)
            done.erasure_refunds.append(wallet_id)

    def _move_unclaimed(self, wallet_id: UUID, done: WithdrawalPass) -> bool:
        """Move what no refund returns to ``unclaimed``; True when nothing is left to watch."""
        wallet = self._wallet(wallet_id)
        before = wallet.unclaimed
        self.ledger.move_unclaimed(wallet.user_id, ERASURE)
        wallet = self._wallet(wallet_id)
        if wallet.unclaimed > before:
            done.unclaimed.append((wallet_id, wallet.unclaimed - before))
        # A dispute's outcome or a refund's failure brings the wallet back through _discover.
        return not wallet.withdrawal_pending

    def _work_wallet(self, wallet_id: UUID, done: WithdrawalPass) -> bool:
        """Settle what can be settled; True when nothing is left pending in this wallet."""
        wallet = self._wallet(wallet_id)
        settled = True
        for hold in list(wallet.withdrawals.values()):
            if hold.settled:
                continue
            for lot_key in hold.lots:
                if hold.outcome(UUID(lot_key)) is not LotOutcome.PENDING:
                    continue
                outcome = self._settle_lot(wallet, hold, wallet.lot(lot_key))
                pair = (hold.withdrawal_id, UUID(lot_key))
                if outcome == "refunded":
                    done.refunded.append(pair)
                elif outcome == "refused":
                    done.refused.append(pair)
                else:
                    done.unresolved.append(pair)
                    settled = False
        return settled

    def _settle_lot(self, wallet: Wallet, hold: WithdrawalHold, lot: Lot) -> str:
        withdrawal_id = hold.withdrawal_id
        tokens = hold.lots[str(lot.lot_id)]
        ours = {"withdrawal_id": str(withdrawal_id), "lot_id": str(lot.lot_id)}
        cause = Cause.worker("withdrawals", f"{withdrawal_id}:{lot.lot_id}")
        payment_intent = lot.payment_intent_id
        if not payment_intent:
            return self._refuse(wallet, hold, lot, "no_card_payment", cause)
        try:
            refund = self.gateway.find_refund(payment_intent_id=payment_intent, metadata=ours)
            if refund is None:
                if not lot.usable:
                    # Disputed: the card network owns the money now; no new refund (rules §6).
                    return self._refuse(wallet, hold, lot, "lot_disputed", cause)
                refund = self.gateway.refund(
                    payment_intent_id=payment_intent,
                    cents=tokens * lot.token_price,
                    idempotency_key=f"{withdrawal_id}:{lot.lot_id}",
                    metadata={**ours, "user_id": str(wallet.user_id)},
                )
        except PaymentRefused as e:
            return self._refuse(wallet, hold, lot, e.code, cause)
        except PaymentUnavailable as e:
            log.warning("refund of %s:%s unresolved, retried later: %s", withdrawal_id, lot, e)
            return "unresolved"
        return self._record(wallet, hold, lot, refund, cause)

    def _record(
        self, wallet: Wallet, hold: WithdrawalHold, lot: Lot, refund: Refund, cause: Cause
    ) -> str:
        if not refund.made:
            return self._refuse(wallet, hold, lot, f"refund_{refund.status}", cause)
        with contextlib.suppress(OutcomeAlreadyRecorded):  # another copy recorded it first
            self.ledger.record_refund(
                wallet.user_id, hold.withdrawal_id, lot.lot_id, refund.refund_id, cause
            )
        return "refunded"

    def _refuse(
        self, wallet: Wallet, hold: WithdrawalHold, lot: Lot, reason: str, cause: Cause
    ) -> str:
        with contextlib.suppress(OutcomeAlreadyRecorded):
            self.ledger.refuse_refund(wallet.user_id, hold.withdrawal_id, lot.lot_id, reason, cause)
        return "refused"
