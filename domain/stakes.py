"""A wallet's holds for challenges: stakes and penalties, and what settles them (rules §2-§5).

A mixin of the ``Wallet`` aggregate: its events are ``Wallet.StakeLocked`` and so on, under
their unchanged explicit topics.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerEvent
from domain.tokens import (
    Lot,
    LotSource,
    Returned,
    Taken,
    part_of,
    returning,
    take_capped,
    take_fifo,
    total,
)
from domain.wallet_state import WalletState, as_taken, lot_parts


class Stakes(WalletState):
    """Tokens a wallet holds in challenges, taken FIFO and given back to their very lots."""

    class StakeLocked(LedgerEvent):
        TOPIC = "peerpush:Wallet.StakeLocked"
        challenge_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: WalletState) -> None:
            wallet._take(self.taken)
            wallet.stakes[str(self.challenge_id)] = lot_parts(self.taken)
            wallet.staked += self.tokens

    class PenaltyCharged(LedgerEvent):
        """Tokens charged into a challenge's pool for a rejected submission (capped)."""

        TOPIC = "peerpush:Wallet.PenaltyCharged"
        challenge_id: UUID
        submission_id: UUID
        tokens: int
        taken: Taken

        def apply(self, wallet: WalletState) -> None:
            wallet._take(self.taken)
            held = wallet.penalties.setdefault(str(self.challenge_id), [])
            held.extend(lot_parts(self.taken))
            wallet.penalised += self.tokens

    class HoldsReturned(LedgerEvent):
        """A cancelled challenge gave back this wallet's stake and penalties."""

        TOPIC = "peerpush:Wallet.HoldsReturned"
        challenge_id: UUID
        stake: int
        penalties: int
        returned: Returned

        def apply(self, wallet: WalletState) -> None:
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

        def apply(self, wallet: WalletState) -> None:
            wallet._give_back(self.returned)
            if self.payout_lot_id is not None and self.payout_tokens > 0:
                wallet._add_lot(
                    Lot(
                        lot_id=self.payout_lot_id,
                        seq=wallet.next_lot_seq,
                        source=LotSource.PAYOUT,
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

    def stake_in(self, challenge_id: UUID) -> int:
        return total(as_taken(self.stakes.get(str(challenge_id), [])))

    def penalties_in(self, challenge_id: UUID) -> int:
        return total(as_taken(self.penalties.get(str(challenge_id), [])))

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
        stake_taken = as_taken(self.stakes.get(str(challenge_id), []))
        penalty_taken = as_taken(self.penalties.get(str(challenge_id), []))
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
        stake_taken = as_taken(self.stakes.get(str(challenge_id), []))
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
