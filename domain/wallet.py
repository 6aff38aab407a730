"""The wallet: one per user, the only place a user's tokens live (SPEC §2).

Commands check the rules and decide exactly which lots move; the events they record carry
those decisions (``taken`` pairs, ``returned`` triples) so applying an event only assigns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerAggregate, LedgerCreated, LedgerEvent
from domain.cashouts import CashoutHold, Cashouts
from domain.errors import (
    InvalidField,
    NotRefundable,
    OutcomeAlreadyRecorded,
    UnknownLot,
    UnknownWithdrawal,
    WalletClosed,
)
from domain.tokens import (
    Lot,
    Returned,
    Taken,
    part_of,
    positive_tokens,
    returning,
    take_capped,
    take_fifo,
    total,
)

LotOutcome = Literal["pending", "refunded", "refused", "failed"]


@dataclass(slots=True)
class WithdrawalHold:
    """Tokens on their way back to the card, lot by lot (SPEC §2, two phases)."""

    withdrawal_id: UUID
    lots: dict[str, int]
    outcomes: dict[str, str] = field(default_factory=dict)
    refund_ids: dict[str, str] = field(default_factory=dict)
    settled: bool = False

    def outcome(self, lot_id: UUID) -> str:
        return self.outcomes.get(str(lot_id), "pending")


class Wallet(Cashouts, LedgerAggregate):
    """A user's tokens: lots, holds for stakes, penalties, withdrawals and cash-outs, and
    totals. Cash-outs live in :mod:`domain.cashouts`."""

    TOPIC = "peerpush:Wallet"
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before wallets could be closed: open, nothing unclaimed, and no
        external refund to reverse (a failure of one written off before is not reversed)."""
        state.update(
            closed=False,
            unclaimed=0,
            erasure_tried={},
            write_offs={},
            reversed_write_offs={},
        )

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot taken before cash-outs existed has none."""
        state.update(cashouts={})

    class Opened(LedgerCreated):
        TOPIC = "peerpush:Wallet.Opened"
        user_id: UUID

    class DepositCredited(LedgerEvent):
        """Tokens bought with a card: one per PaymentIntent, a new deposit lot."""

        TOPIC = "peerpush:Wallet.DepositCredited"
        payment_intent_id: str
        lot_id: UUID
        tokens: int
        cents_paid: int
        token_price: int
        refundable_until: datetime

        def apply(self, wallet: Wallet) -> None:
            wallet._add_lot(
                Lot(
                    lot_id=self.lot_id,
                    seq=len(wallet.lots),
                    source="deposit",
                    amount=self.tokens,
                    remaining=self.tokens,
                    created_at=self.timestamp,
                    refundable_until=self.refundable_until,
                    payment_intent_id=self.payment_intent_id,
                    cents_paid=self.cents_paid,
                    token_price=self.token_price,
                )
            )
            wallet.deposits[self.payment_intent_id] = str(self.lot_id)
            wallet.deposited += self.tokens

    class StakeLocked(LedgerEvent):
        TOPIC = "peerpush:Wallet.StakeLocked"
        challenge_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: Wallet) -> None:
            wallet._take(self.taken)
            wallet.stakes[str(self.challenge_id)] = [[lot, n] for lot, n in self.taken]
            wallet.staked += self.tokens

    class PenaltyCharged(LedgerEvent):
        """Tokens charged into a challenge's pool for a rejected submission (capped)."""

        TOPIC = "peerpush:Wallet.PenaltyCharged"
        challenge_id: UUID
        submission_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: Wallet) -> None:
            wallet._take(self.taken)
            held = wallet.penalties.setdefault(str(self.challenge_id), [])
            held.extend([lot, n] for lot, n in self.taken)
            wallet.penalised += self.tokens

    class HoldsReturned(LedgerEvent):
        """A cancelled challenge gave back this wallet's stake and penalties."""

        TOPIC = "peerpush:Wallet.HoldsReturned"
        challenge_id: UUID
        stake: int
        penalties: int
        returned: Returned

        def apply(self, wallet: Wallet) -> None:
            wallet._give_back(self.returned)
            wallet.stakes.pop(str(self.challenge_id), None)
            wallet.penalties.pop(str(self.challenge_id), None)
            wallet.staked -= self.stake
            wallet.penalised -= self.penalties

    class StakeSettled(LedgerEvent):
        """A settled challenge's outcome for this wallet.

        ``share`` is what the finisher receives: up to its own stake comes back to the lots
        the stake was taken from (``returned``), the excess is a new payout lot. A
        non-finisher's stake is forfeited (``share`` 0).
        """

        TOPIC = "peerpush:Wallet.StakeSettled"
        challenge_id: UUID
        stake: int
        share: int
        returned: Returned
        payout_lot_id: UUID | None
        payout_tokens: int

        def apply(self, wallet: Wallet) -> None:
            wallet._give_back(self.returned)
            if self.payout_lot_id is not None and self.payout_tokens > 0:
                wallet._add_lot(
                    Lot(
                        lot_id=self.payout_lot_id,
                        seq=len(wallet.lots),
                        source="payout",
                        amount=self.payout_tokens,
                        remaining=self.payout_tokens,
                        created_at=self.timestamp,
                    )
                )
            wallet.stakes.pop(str(self.challenge_id), None)
            wallet.penalties.pop(str(self.challenge_id), None)
            wallet.staked -= self.stake
            wallet.won += self.payout_tokens
            wallet.forfeited += max(0, self.stake - self.share)

    class WithdrawalRequested(LedgerEvent):
        """Phase one of a refund to the card: the chosen lots' tokens are held."""

        TOPIC = "peerpush:Wallet.WithdrawalRequested"
        withdrawal_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: Wallet) -> None:
            wallet._take(self.taken)
            wallet.withdrawals[str(self.withdrawal_id)] = WithdrawalHold(
                withdrawal_id=self.withdrawal_id,
                lots={str(lot): n for lot, n in self.taken},
            )
            wallet.withdrawal_pending += self.tokens
            if wallet.closed:  # the one refund to the card a closed wallet's lot gets
                wallet.erasure_tried.update((str(lot), True) for lot, _ in self.taken)

    class LotRefunded(LedgerEvent):
        """Stripe refunded one lot of a withdrawal: its tokens left the ledger."""

        TOPIC = "peerpush:Wallet.LotRefunded"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        refund_id: str
        cents: int

        def apply(self, wallet: Wallet) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = "refunded"
            hold.refund_ids[str(self.lot_id)] = self.refund_id
            wallet.withdrawal_pending -= self.tokens
            wallet.refunded += self.tokens

    class LotRefundRefused(LedgerEvent):
        """The refund of one lot was not made: its tokens went back to the lot."""

        TOPIC = "peerpush:Wallet.LotRefundRefused"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        reason: str
        returned: Returned

        def apply(self, wallet: Wallet) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = "refused"
            wallet.withdrawal_pending -= self.tokens
            wallet._give_back(self.returned)

    class WithdrawalSettled(LedgerEvent):
        """Every lot of the withdrawal has an outcome."""

        TOPIC = "peerpush:Wallet.WithdrawalSettled"
        withdrawal_id: UUID
        refunded: int
        refused: int

        def apply(self, wallet: Wallet) -> None:
            wallet.withdrawals[str(self.withdrawal_id)].settled = True

    class RefundFailed(LedgerEvent):
        """A refund recorded as made failed later: its tokens came back to the lot."""

        TOPIC = "peerpush:Wallet.RefundFailed"
        withdrawal_id: UUID
        lot_id: UUID
        tokens: int
        refund_id: str
        returned: Returned

        def apply(self, wallet: Wallet) -> None:
            hold = wallet.withdrawals[str(self.withdrawal_id)]
            hold.outcomes[str(self.lot_id)] = "failed"
            wallet.refunded -= self.tokens
            wallet._give_back(self.returned)

    class AdjustmentCredited(LedgerEvent):
        TOPIC = "peerpush:Wallet.AdjustmentCredited"
        adjustment_id: UUID
        lot_id: UUID
        tokens: int
        reason: str

        def apply(self, wallet: Wallet) -> None:
            wallet._add_lot(
                Lot(
                    lot_id=self.lot_id,
                    seq=len(wallet.lots),
                    source="adjustment",
                    amount=self.tokens,
                    remaining=self.tokens,
                    created_at=self.timestamp,
                )
            )
            wallet.adjusted_in += self.tokens
            wallet.adjustments[str(self.adjustment_id)] = self.tokens

    class AdjustmentDebited(LedgerEvent):
        TOPIC = "peerpush:Wallet.AdjustmentDebited"
        adjustment_id: UUID
        tokens: int
        taken: Taken
        reason: str

        def apply(self, wallet: Wallet) -> None:
            wallet._take(self.taken)
            wallet.adjusted_out += self.tokens
            wallet.adjustments[str(self.adjustment_id)] = -self.tokens

    class DisputeRecorded(LedgerEvent):
        """A dispute arrived before its deposit was credited; kept until it is."""

        TOPIC = "peerpush:Wallet.DisputeRecorded"
        dispute_id: str
        payment_intent_id: str

        def apply(self, wallet: Wallet) -> None:
            wallet.early_disputes[self.payment_intent_id] = self.dispute_id

    class EarlyDisputeClosed(LedgerEvent):
        """A dispute kept before its deposit was credited was closed; applied at the credit.

        Won: the deposit will be credited usable. Lost: it will be credited and then written
        off for ``cents``.
        """

        TOPIC = "peerpush:Wallet.EarlyDisputeClosed"
        dispute_id: str
        payment_intent_id: str
        won: bool
        cents: int

        def apply(self, wallet: Wallet) -> None:
            wallet.early_disputes.pop(self.payment_intent_id, None)
            if not self.won:
                wallet.early_losses[self.payment_intent_id] = [self.dispute_id, self.cents]

    class LotFrozen(LedgerEvent):
        """A card dispute freezes the lot it paid for (SPEC §6); no hold is released."""

        TOPIC = "peerpush:Wallet.LotFrozen"
        dispute_id: str
        lot_id: UUID
        tokens: int

        def apply(self, wallet: Wallet) -> None:
            lot = wallet.lot(self.lot_id)
            lot.frozen = True
            wallet.available -= self.tokens
            wallet.frozen += self.tokens
            wallet.disputes[self.dispute_id] = str(self.lot_id)
            for pi, dispute in list(wallet.early_disputes.items()):
                if dispute == self.dispute_id:
                    del wallet.early_disputes[pi]

    class LotUnfrozen(LedgerEvent):
        """The dispute was won: the lot is usable again."""

        TOPIC = "peerpush:Wallet.LotUnfrozen"
        dispute_id: str
        lot_id: UUID
        tokens: int

        def apply(self, wallet: Wallet) -> None:
            wallet.lot(self.lot_id).frozen = False
            wallet.frozen -= self.tokens
            wallet.available += self.tokens
            wallet.disputes.pop(self.dispute_id, None)

    class LotWrittenOff(LedgerEvent):
        """Card money taken back (lost dispute, refund outside our flow).

        ``written_off`` (w) tokens are written off: ``taken`` leave the lot, and
        ``loss`` (w − taken) is booked as the platform's dispute loss. What stays in the
        lot is usable again (``released``) unless the lot is wholly written off.
        """

        TOPIC = "peerpush:Wallet.LotWrittenOff"
        reference: str
        reason: str
        lot_id: UUID
        cents: int
        written_off: int
        taken: int
        loss: int
        lot_closed: bool
        released: int
        from_frozen: bool
        stays_frozen: bool

        def apply(self, wallet: Wallet) -> None:
            lot = wallet.lot(self.lot_id)
            if self.from_frozen:
                wallet.frozen -= self.taken + self.released
            else:
                wallet.available -= self.taken
            wallet.available += self.released
            lot.remaining -= self.taken
            lot.loss += self.loss
            lot.frozen = self.stays_frozen
            lot.written_off = self.lot_closed
            wallet.written_off_total += self.written_off
            wallet.disputes.pop(self.reference, None)
            wallet.write_offs[self.reference] = [str(self.lot_id), self.written_off, self.reason]

    class Closed(LedgerEvent):
        """The owner was erased (SPEC §7): the tokens here are no longer anyone's to spend.

        Carries no personal data, only who closed it (``actor``) and when (``timestamp``).
        Tokens that reach the wallet later are refunded to the card once or moved to the
        platform's ``unclaimed`` account.
        """

        TOPIC = "peerpush:Wallet.Closed"

        def apply(self, wallet: Wallet) -> None:
            wallet.closed = True

    class TokensUnclaimed(LedgerEvent):
        """Tokens of a closed wallet that no refund returns moved to the platform's
        ``unclaimed`` account: ``moved`` says which lots they left. Never revenue."""

        TOPIC = "peerpush:Wallet.TokensUnclaimed"
        tokens: int
        moved: Taken

        def apply(self, wallet: Wallet) -> None:
            wallet._take(self.moved)
            wallet.unclaimed += self.tokens

    class WriteOffReversed(LedgerEvent):
        """A refund made outside our flow, written off, ended ``failed`` or ``canceled``:
        its ``written_off`` tokens come back (``returned``: refills first reduce the lot's
        booked loss) and the lot reopens unless another write-off still closes it."""

        TOPIC = "peerpush:Wallet.WriteOffReversed"
        reference: str
        lot_id: UUID
        written_off: int
        returned: Returned
        reopened: bool

        def apply(self, wallet: Wallet) -> None:
            wallet._give_back(self.returned)
            wallet.written_off_total -= self.written_off
            if self.reopened:
                wallet.lot(self.lot_id).written_off = False
            wallet.write_offs.pop(self.reference, None)
            wallet.reversed_write_offs[self.reference] = self.written_off

    def __init__(self, user_id: UUID) -> None:
        self.user_id = user_id
        self.lots: dict[str, Lot] = {}
        self.deposits: dict[str, str] = {}
        self.stakes: dict[str, list[list[Any]]] = {}
        self.penalties: dict[str, list[list[Any]]] = {}
        self.withdrawals: dict[str, WithdrawalHold] = {}
        self.disputes: dict[str, str] = {}
        self.early_disputes: dict[str, str] = {}
        self.early_losses: dict[str, list[Any]] = {}
        self.adjustments: dict[str, int] = {}
        self.available = 0
        self.frozen = 0
        self.staked = 0
        self.withdrawal_pending = 0
        self.cashout_pending = 0
        self.deposited = 0
        self.refunded = 0
        self.cashed_out = 0
        self.won = 0
        self.forfeited = 0
        self.penalised = 0
        self.written_off_total = 0
        self.adjusted_in = 0
        self.adjusted_out = 0
        self.closed = False
        self.unclaimed = 0
        self.erasure_tried: dict[str, bool] = {}  # lots held for their one refund since closing
        self.write_offs: dict[str, list[Any]] = {}  # reference → [lot id, w, reason]
        self.reversed_write_offs: dict[str, int] = {}  # reference → w given back
        self.cashouts: dict[str, CashoutHold] = {}

    @classmethod
    def open(cls, user_id: UUID, cause: Cause, at: datetime) -> Wallet:
        return cls._create(
            cls.Opened,
            id=ids.wallet_id(user_id),
            user_id=user_id,
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )

    # -- queries -----------------------------------------------------------------------

    def lot(self, lot_id: UUID | str) -> Lot:
        try:
            return self.lots[str(lot_id)]
        except KeyError:
            raise UnknownLot(f"no lot {lot_id} in this wallet") from None

    def refundable(self, now: datetime) -> int:
        return sum(lot.remaining for lot in self.lots.values() if lot.refundable_at(now))

    def has_credited(self, payment_intent_id: str) -> bool:
        return payment_intent_id in self.deposits

    def stake_in(self, challenge_id: UUID) -> int:
        return total(self.stakes.get(str(challenge_id), []))

    def penalties_in(self, challenge_id: UUID) -> int:
        return total(self.penalties.get(str(challenge_id), []))

    @property
    def holds_in_flight(self) -> bool:
        return bool(
            self.staked
            or self.withdrawal_pending
            or self.cashout_pending
            or any(self.penalties.values())
        )

    # -- commands ----------------------------------------------------------------------

    def credit_deposit(
        self,
        payment_intent_id: str,
        cents_paid: int,
        token_price: int,
        refund_window: timedelta,
        cause: Cause,
        at: datetime,
    ) -> bool:
        """Credit a paid PaymentIntent once; a repeat delivery changes nothing."""
        if self.has_credited(payment_intent_id):
            return False
        positive_tokens(cents_paid, what="cents paid")
        positive_tokens(token_price, what="token price")
        tokens = cents_paid // token_price
        if tokens <= 0:
            raise InvalidField("the payment buys no whole token")
        lot_id = ids.deposit_lot_id(payment_intent_id)
        self._record(
            self.DepositCredited,
            cause,
            at,
            payment_intent_id=payment_intent_id,
            lot_id=lot_id,
            tokens=tokens,
            cents_paid=cents_paid,
            token_price=token_price,
            refundable_until=at + refund_window,
        )
        early = self.early_disputes.get(payment_intent_id)
        if early is not None:
            self.freeze_lot(lot_id, early, cause, at)
        lost = self.early_losses.get(payment_intent_id)
        if lost is not None:
            dispute_id, cents = lost
            self.write_off(lot_id, str(dispute_id), "dispute_lost", int(cents), cause, at)
        return True

    def lock_stake(self, challenge_id: UUID, tokens: int, cause: Cause, at: datetime) -> None:
        """Move a challenge's entry stake from available to staked (FIFO); 0 moves nothing."""
        self._refuse_if_closed()
        if tokens == 0 or str(challenge_id) in self.stakes:
            return
        taken = take_fifo(self.lots.values(), tokens, available=self.available)
        self._record(
            self.StakeLocked, cause, at, challenge_id=challenge_id, tokens=tokens, taken=taken
        )

    def charge_penalty(
        self, challenge_id: UUID, submission_id: UUID, tokens: int, cause: Cause, at: datetime
    ) -> int:
        """Charge a rejection's penalty, capped at what is available; returns the charge."""
        taken = take_capped(self.lots.values(), tokens, available=self.available)
        charged = total(taken)
        if charged:
            self._record(
                self.PenaltyCharged,
                cause,
                at,
                challenge_id=challenge_id,
                submission_id=submission_id,
                tokens=charged,
                taken=taken,
            )
        return charged

    def return_holds(self, challenge_id: UUID, cause: Cause, at: datetime) -> tuple[int, int]:
        """Give back a cancelled challenge's stake and penalties to their very lots."""
        stake_taken = self.stakes.get(str(challenge_id), [])
        penalty_taken = self.penalties.get(str(challenge_id), [])
        stake, penalties = total(stake_taken), total(penalty_taken)
        if stake or penalties:
            self._record(
                self.HoldsReturned,
                cause,
                at,
                challenge_id=challenge_id,
                stake=stake,
                penalties=penalties,
                returned=returning(self.lots, [*stake_taken, *penalty_taken]),
            )
        return stake, penalties

    def settle_stake(
        self, challenge_id: UUID, share: int, cause: Cause, at: datetime
    ) -> tuple[int, int]:
        """Apply a settlement: own stake back first, the excess as a payout lot.

        Returns ``(returned_stake, payout)``.
        """
        stake_taken = self.stakes.get(str(challenge_id), [])
        stake = total(stake_taken)
        back = min(share, stake)
        payout = share - back
        if stake or share or str(challenge_id) in self.penalties:
            self._record(
                self.StakeSettled,
                cause,
                at,
                challenge_id=challenge_id,
                stake=stake,
                share=share,
                returned=returning(self.lots, part_of(stake_taken, back)),
                payout_lot_id=ids.payout_lot_id(challenge_id, self.user_id) if payout else None,
                payout_tokens=payout,
            )
        return back, payout

    def request_withdrawal(
        self, withdrawal_id: UUID, tokens: int, cause: Cause, at: datetime
    ) -> Taken:
        """Hold refundable deposit lots, oldest first, for a refund to the card."""
        positive_tokens(tokens)
        self._refuse_if_closed()
        if str(withdrawal_id) in self.withdrawals:
            return tuple(
                (UUID(lot), n) for lot, n in self.withdrawals[str(withdrawal_id)].lots.items()
            )
        refundable = [lot for lot in self.lots.values() if lot.refundable_at(at)]
        available = sum(lot.remaining for lot in refundable)
        if tokens > available:
            raise NotRefundable(tokens, available)
        taken = take_fifo(refundable, tokens, available=available)
        self._record(
            self.WithdrawalRequested,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            tokens=tokens,
            taken=taken,
        )
        return taken

    def record_refund(
        self,
        withdrawal_id: UUID,
        lot_id: UUID,
        refund_id: str,
        cause: Cause,
        at: datetime,
    ) -> None:
        """Record that Stripe refunded one lot of a withdrawal (its first outcome)."""
        hold, tokens = self._pending_lot(withdrawal_id, lot_id)
        lot = self.lot(lot_id)
        self._record(
            self.LotRefunded,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            refund_id=refund_id,
            cents=tokens * lot.token_price,
        )
        self._settle_if_complete(hold, cause, at)

    def refuse_refund(
        self, withdrawal_id: UUID, lot_id: UUID, reason: str, cause: Cause, at: datetime
    ) -> None:
        """Record that one lot's refund was not made: its tokens go back to the lot."""
        hold, tokens = self._pending_lot(withdrawal_id, lot_id)
        self._record(
            self.LotRefundRefused,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            reason=reason,
            returned=returning(self.lots, [(lot_id, tokens)]),
        )
        self._settle_if_complete(hold, cause, at)

    def fail_refund(self, withdrawal_id: UUID, lot_id: UUID, cause: Cause, at: datetime) -> bool:
        """A refund already recorded as made failed later; anything else is ignored."""
        hold = self.withdrawals.get(str(withdrawal_id))
        if hold is None:
            raise UnknownWithdrawal(f"no withdrawal {withdrawal_id}")
        if hold.outcome(lot_id) != "refunded":
            return False
        tokens = hold.lots[str(lot_id)]
        self._record(
            self.RefundFailed,
            cause,
            at,
            withdrawal_id=withdrawal_id,
            lot_id=lot_id,
            tokens=tokens,
            refund_id=hold.refund_ids.get(str(lot_id), ""),
            returned=returning(self.lots, [(lot_id, tokens)]),
        )
        return True

    def credit_adjustment(
        self, adjustment_id: UUID, tokens: int, reason: str, cause: Cause, at: datetime
    ) -> None:
        """An admin's credit: a new adjustment lot. A repeated adjustment id changes nothing."""
        positive_tokens(tokens)
        if str(adjustment_id) in self.adjustments:
            return
        self._record(
            self.AdjustmentCredited,
            cause,
            at,
            adjustment_id=adjustment_id,
            lot_id=ids.adjustment_lot_id(adjustment_id),
            tokens=tokens,
            reason=_reason(reason),
        )

    def debit_adjustment(
        self, adjustment_id: UUID, tokens: int, reason: str, cause: Cause, at: datetime
    ) -> None:
        """An admin's debit, FIFO. A repeated adjustment id changes nothing."""
        positive_tokens(tokens)
        if str(adjustment_id) in self.adjustments:
            return
        taken = take_fifo(self.lots.values(), tokens, available=self.available)
        self._record(
            self.AdjustmentDebited,
            cause,
            at,
            adjustment_id=adjustment_id,
            tokens=tokens,
            taken=taken,
            reason=_reason(reason),
        )

    def open_dispute(
        self, payment_intent_id: str, dispute_id: str, cause: Cause, at: datetime
    ) -> None:
        """Freeze the disputed deposit's lot, or keep the dispute until it is credited."""
        if dispute_id in self.disputes:
            return
        lot_id = self.deposits.get(payment_intent_id)
        if lot_id is None:
            if payment_intent_id not in self.early_disputes:
                self._record(
                    self.DisputeRecorded,
                    cause,
                    at,
                    dispute_id=dispute_id,
                    payment_intent_id=payment_intent_id,
                )
            return
        self.freeze_lot(UUID(lot_id), dispute_id, cause, at)

    def freeze_lot(self, lot_id: UUID, dispute_id: str, cause: Cause, at: datetime) -> None:
        """Freeze the lot for this dispute.

        A lot already wholly written off (refunded outside our flow) has nothing left to
        freeze, but the dispute is recorded all the same (``tokens=0``): if it is lost, the
        card money goes a second time and its whole w must be booked as the platform's loss.
        """
        lot = self.lot(lot_id)
        if lot.frozen and not lot.written_off:
            return
        if lot.written_off:
            self._record(self.LotFrozen, cause, at, dispute_id=dispute_id, lot_id=lot_id, tokens=0)
            return
        self._record(
            self.LotFrozen, cause, at, dispute_id=dispute_id, lot_id=lot_id, tokens=lot.remaining
        )

    def win_dispute(self, dispute_id: str, cause: Cause, at: datetime) -> None:
        lot_id = self.disputes.get(dispute_id)
        if lot_id is None:
            self._close_early_dispute(dispute_id, True, 0, cause, at)
            return
        lot = self.lot(lot_id)
        self._record(
            self.LotUnfrozen,
            cause,
            at,
            dispute_id=dispute_id,
            lot_id=lot.lot_id,
            tokens=lot.remaining if lot.frozen else 0,
        )

    def lose_dispute(self, dispute_id: str, cents: int, cause: Cause, at: datetime) -> None:
        lot_id = self.disputes.get(dispute_id)
        if lot_id is None:
            self._close_early_dispute(dispute_id, False, cents, cause, at)
            return
        self.write_off(UUID(lot_id), dispute_id, "dispute_lost", cents, cause, at)

    def _close_early_dispute(
        self, dispute_id: str, won: bool, cents: int, cause: Cause, at: datetime
    ) -> None:
        """A dispute closed before its deposit arrived: remember the verdict for the credit."""
        for payment_intent_id, early in self.early_disputes.items():
            if early == dispute_id:
                if not won:
                    positive_tokens(cents, what="cents")
                self._record(
                    self.EarlyDisputeClosed,
                    cause,
                    at,
                    dispute_id=dispute_id,
                    payment_intent_id=payment_intent_id,
                    won=won,
                    cents=cents,
                )
                return

    def write_off(
        self,
        lot_id: UUID,
        reference: str,
        reason: str,
        cents: int,
        cause: Cause,
        at: datetime,
    ) -> int:
        """Take back card money: w = cents ÷ the lot's price, at most its amount (SPEC §6)."""
        positive_tokens(cents, what="cents")
        lot = self.lot(lot_id)
        w = min(cents // lot.token_price, lot.amount)
        taken = min(w, lot.remaining)
        # A lot wholly written off stays so: a later, smaller write-off must not reopen it.
        closed = lot.written_off or w == lot.amount
        # A frozen lot's tokens beyond w become usable again, unless another open dispute
        # still holds the lot; an unfrozen lot's already are.
        stays_frozen = lot.frozen and any(
            held == str(lot_id) and dispute != reference for dispute, held in self.disputes.items()
        )
        released = lot.remaining - taken if lot.frozen and not closed and not stays_frozen else 0
        self._record(
            self.LotWrittenOff,
            cause,
            at,
            reference=reference,
            reason=reason,
            lot_id=lot_id,
            cents=cents,
            written_off=w,
            taken=taken,
            loss=w - taken,
            lot_closed=closed,
            released=released,
            from_frozen=lot.frozen,
            stays_frozen=stays_frozen and not closed,
        )
        return w

    # -- an erased owner (SPEC §7) ---------------------------------------------------------

    def close(self, cause: Cause, at: datetime) -> None:
        """Close the wallet of an erased user; closing twice changes nothing."""
        if not self.closed:
            self._record(self.Closed, cause, at)

    def erasure_refundable(self, at: datetime) -> Taken:
        """What a closed wallet still refunds to the card: usable deposit lots in their
        refund window that no refund to the card was tried for since the closing."""
        if not self.closed:
            return ()
        return tuple(
            (lot.lot_id, lot.remaining)
            for lot in self.lots.values()
            if lot.remaining > 0
            and lot.refundable_at(at)
            and str(lot.lot_id) not in self.erasure_tried
        )

    def request_erasure_refund(self, withdrawal_id: UUID, cause: Cause, at: datetime) -> Taken:
        """Hold every lot a closed wallet still refunds to the card, for one refund each.

        The same ``WithdrawalRequested`` a user's withdrawal records, so the withdrawal
        worker makes and records the refunds; its lots are never refunded a second time.
        """
        taken = self.erasure_refundable(at)
        if taken:
            self._record(
                self.WithdrawalRequested,
                cause,
                at,
                withdrawal_id=withdrawal_id,
                tokens=total(taken),
                taken=taken,
            )
        return taken

    def move_unclaimed(self, cause: Cause, at: datetime) -> Taken:
        """Move a closed wallet's usable tokens that no refund will return to ``unclaimed``.

        Lots still waiting for their one refund to the card stay; frozen lots wait for their
        dispute's outcome.
        """
        if not self.closed:
            return ()
        waiting = {str(lot) for lot, _ in self.erasure_refundable(at)}
        moved = tuple(
            (lot.lot_id, lot.remaining)
            for lot in self.lots.values()
            if lot.usable and lot.remaining > 0 and str(lot.lot_id) not in waiting
        )
        if moved:
            self._record(self.TokensUnclaimed, cause, at, tokens=total(moved), moved=moved)
        return moved

    def reverse_write_off(self, reference: str, cause: Cause, at: datetime) -> bool:
        """An external refund that was written off ended failed or canceled: give its
        tokens back. Unknown or already reversed references change nothing."""
        found = self.write_offs.get(reference)
        if found is None or found[2] != "external_refund":
            return False
        lot_id, written_off = str(found[0]), int(found[1])
        lot = self.lot(lot_id)
        still_closed = any(
            str(other[0]) == lot_id and int(other[1]) == lot.amount
            for ref, other in self.write_offs.items()
            if ref != reference
        )
        self._record(
            self.WriteOffReversed,
            cause,
            at,
            reference=reference,
            lot_id=lot.lot_id,
            written_off=written_off,
            returned=returning(self.lots, [(lot.lot_id, written_off)]),
            reopened=lot.written_off and not still_closed,
        )
        return True

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise WalletClosed("this wallet's owner was erased: its tokens cannot be moved")

    # -- state changes shared by several events -----------------------------------------

    def _add_lot(self, lot: Lot) -> None:
        self.lots[str(lot.lot_id)] = lot
        self.available += lot.remaining

    def _take(self, taken: Taken) -> None:
        for lot_id, tokens in taken:
            self.lots[str(lot_id)].remaining -= tokens
            self.available -= tokens

    def _give_back(self, returned: Returned) -> None:
        for lot_id, refilled, recovered, frozen in returned:
            lot = self.lots[str(lot_id)]
            lot.loss -= recovered
            lot.remaining += refilled
            if frozen:
                self.frozen += refilled
            else:
                self.available += refilled

    def _pending_lot(self, withdrawal_id: UUID, lot_id: UUID) -> tuple[WithdrawalHold, int]:
        hold = self.withdrawals.get(str(withdrawal_id))
        if hold is None:
            raise UnknownWithdrawal(f"no withdrawal {withdrawal_id}")
        if str(lot_id) not in hold.lots:
            raise UnknownLot(f"lot {lot_id} is not part of withdrawal {withdrawal_id}")
        if hold.outcome(lot_id) != "pending":
            raise OutcomeAlreadyRecorded(f"lot {lot_id} already {hold.outcome(lot_id)}")
        return hold, hold.lots[str(lot_id)]

    def _settle_if_complete(self, hold: WithdrawalHold, cause: Cause, at: datetime) -> None:
        if all(hold.outcome(UUID(lot)) != "pending" for lot in hold.lots):
            refunded = sum(n for lot, n in hold.lots.items() if hold.outcomes[lot] == "refunded")
            self._record(
                self.WithdrawalSettled,
                cause,
                at,
                withdrawal_id=hold.withdrawal_id,
                refunded=refunded,
                refused=sum(hold.lots.values()) - refunded,
            )


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not 1 <= len(reason) <= 500:
        raise InvalidField("a reason of 1 to 500 characters is required")
    return reason
