"""The events that move tokens between journal accounts, listed once.

The journal posts one entry for each; the audit checks that each has exactly one. A new
money event (a cash-out's, say) is added here and both follow.
"""

from __future__ import annotations

from typing import Any

from domain.challenge import Challenge
from domain.wallet import Wallet

W = Wallet
MONEY_EVENTS: tuple[type[Any], ...] = (
    W.DepositCredited,
    W.StakeLocked,
    W.PenaltyCharged,
    W.HoldsReturned,
    W.StakeSettled,
    W.WithdrawalRequested,
    W.LotRefunded,
    W.LotRefundRefused,
    W.RefundFailed,
    W.AdjustmentCredited,
    W.AdjustmentDebited,
    W.LotFrozen,
    W.LotUnfrozen,
    W.LotWrittenOff,
    W.TokensUnclaimed,
    W.WriteOffReversed,
    W.CashoutRequested,
    W.CashoutSettled,
    W.CashoutFailed,
    W.CashoutReversed,
    Challenge.Settled,
)
MONEY_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in MONEY_EVENTS)
