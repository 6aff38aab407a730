"""The withdrawal worker: phase two of a withdrawal, one Stripe refund per lot (SPEC §2, §6).

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

Several copies may run: a PostgreSQL advisory lock lets one work per pass while the others
skip, and recording an outcome twice is refused by the wallet (``OutcomeAlreadyRecorded``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from uuid import UUID

from application.ledger import Ledger
from application.ports import Locks, PaymentGateway, PaymentRefused, PaymentUnavailable, Refund
from domain.aggregate import Cause
from domain.errors import OutcomeAlreadyRecorded
from domain.tokens import Lot
from domain.wallet import Wallet, WithdrawalHold

log = logging.getLogger("peerpush.withdrawals")

LOCK_NAME = "withdrawal-worker"
PAGE = 1000


@dataclass
class WithdrawalPass:
    """What one pass did (for logs, metrics and tests)."""

    worked: bool = True
    refunded: list[tuple[UUID, UUID]] = field(default_factory=list)
    refused: list[tuple[UUID, UUID]] = field(default_factory=list)
    unresolved: list[tuple[UUID, UUID]] = field(default_factory=list)


class WithdrawalWorker:
    """Makes and records the refunds of requested withdrawals; resumable and idempotent."""

    def __init__(self, ledger: Ledger, gateway: PaymentGateway, locks: Locks) -> None:
        self.ledger, self.gateway, self.locks = ledger, gateway, locks
        self._position = 0  # the last stream position read
        self._wallets: set[UUID] = set()  # wallets with (possibly) unsettled withdrawals

    def run_pass(self) -> WithdrawalPass:
        with self.locks.try_hold(LOCK_NAME) as mine:
            if not mine:
                return WithdrawalPass(worked=False)
            self._discover()
            done = WithdrawalPass()
            for wallet_id in sorted(self._wallets):
                if self._work_wallet(wallet_id, done):
                    self._wallets.discard(wallet_id)
            return done

    def __call__(self) -> WithdrawalPass:
        return self.run_pass()

    def _discover(self) -> None:
        topics = (Wallet.WithdrawalRequested.TOPIC,)
        while True:
            batch = self.ledger.recorder.select_notifications(
                self._position + 1, PAGE, topics=topics
            )
            for notification in batch:
                self._wallets.add(UUID(str(notification.originator_id)))
                self._position = notification.id
            if len(batch) < PAGE:
                return

    def _work_wallet(self, wallet_id: UUID, done: WithdrawalPass) -> bool:
        """Settle what can be settled; True when nothing is left pending in this wallet."""
        wallet: object = self.ledger.repository.get(wallet_id)
        assert isinstance(wallet, Wallet), f"{wallet_id} is not a wallet"
        settled = True
        for hold in list(wallet.withdrawals.values()):
            if hold.settled:
                continue
            for lot_key in hold.lots:
                if hold.outcome(UUID(lot_key)) != "pending":
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
                    # Disputed: the card network owns the money now; no new refund (SPEC §6).
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
