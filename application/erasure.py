"""Erasing a user's personal data (rules §7): allowed only once their wallet is empty.

Personal data lives in the users table, never in events, so erasure changes no event: the
ledger stays intact and auditable, its events naming an id that no longer leads to a person.
It is refused while the wallet holds any token (available, frozen by a dispute) or any hold
(a stake, a penalty held in a running challenge's pool, a withdrawal or cash-out awaiting its
outcome): those tokens are still the user's, and someone must be able to claim them. It is
also refused while the user takes part in an open challenge (even with no stake: a payout
could still reach them) and while a checkout session of theirs is open (a payment is coming).

An erasure closes the wallet (``Wallet.Closed``, opened first if the user never had one):
tokens that reach it later (a late payment, a refund that fails) are no longer the user's to
spend; the withdrawal worker refunds them to the card once or moves them to the platform's
``unclaimed`` account. The wallet is closed before the personal data goes, so there is no
moment at which an erased user could still move its tokens.

The decision is made on the wallet aggregate loaded from the event store, never on a read
model, so a lagging projection cannot let an erasure through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Protocol
from uuid import UUID

from application.ledger import Ledger
from application.ports import CheckoutSessions
from domain.aggregate import Cause
from domain.errors import Conflict, NotFound
from domain.wallet import Wallet
from domain.wallet_state import held


@dataclass(frozen=True)
class Remaining:
    """What a wallet still holds, in tokens."""

    available: int = 0
    frozen: int = 0
    staked: int = 0
    penalties: int = 0  # charged into running challenges' pools, not yet settled
    pending: int = 0  # withdrawals and cash-outs awaiting their outcome
    challenges: int = 0  # open challenges the user takes part in
    checkouts: int = 0  # tokens of checkout sessions still open

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class WalletNotEmpty(Conflict):
    """Erasure refused: the wallet still holds tokens or holds (409)."""

    code = "wallet_not_empty"

    def __init__(self, remaining: Remaining) -> None:
        held = ", ".join(f"{n} {what}" for what, n in remaining.as_dict().items() if n)
        super().__init__(f"the wallet is not empty ({held}): withdraw or settle it first")
        self.remaining = remaining

    def details(self) -> dict[str, Any]:
        return dict(self.remaining.as_dict())


def remaining_in(wallet: Wallet | None) -> Remaining:
    """What ``wallet`` still holds; a user who never had a wallet holds nothing."""
    if wallet is None:
        return Remaining()
    return Remaining(
        available=wallet.available,
        frozen=wallet.frozen,
        staked=wallet.staked,
        penalties=sum(held(parts) for parts in wallet.penalties.values()),
        pending=wallet.withdrawal_pending + wallet.cashout_pending,
    )


def check_erasable(wallet: Wallet | None) -> None:
    """Raise `WalletNotEmpty` unless the wallet holds no token and no hold."""
    remaining = remaining_in(wallet)
    if not remaining.empty or (wallet is not None and wallet.holds_in_flight):
        raise WalletNotEmpty(remaining)


class Accounts(Protocol):
    """The users table, as erasure needs it (``adapters.users.UserStore``)."""

    def erase(self, user_id: UUID) -> object | None: ...


CHECKOUT_LIFETIME = timedelta(hours=24)
"""Stripe expires a Checkout Session within 24 h: older sessions cannot be paid any more."""


def erase_user(
    ledger: Ledger,
    accounts: Accounts,
    user_id: UUID,
    sessions: CheckoutSessions | None = None,
    cause: Cause | None = None,
) -> None:
    """Erase the user's personal data and end their sessions, if their wallet is empty,
    they take part in no open challenge and no checkout of theirs is open.

    Raises `WalletNotEmpty` (nothing changed) otherwise. The caller checks the user exists.
    The user's checkout book is held throughout, so no checkout opens in between.
    """
    cause = cause or Cause("erasure", "")
    if sessions is None:
        _erase(ledger, accounts, user_id, cause, checkouts=0)
        return
    with sessions.exclusive(str(user_id)) as book:
        since = ledger.clock.now() - CHECKOUT_LIFETIME
        _erase(ledger, accounts, user_id, cause, checkouts=book.open_tokens(since))


def _erase(
    ledger: Ledger, accounts: Accounts, user_id: UUID, cause: Cause, *, checkouts: int
) -> None:
    try:
        wallet: Wallet | None = ledger.wallet_of(user_id)
    except NotFound:
        wallet = None
    remaining = remaining_in(wallet)
    challenges = len(ledger.challenges_joined_by(user_id))
    if challenges or checkouts:
        raise WalletNotEmpty(
            Remaining(**{**remaining.as_dict(), "challenges": challenges, "checkouts": checkouts})
        )
    check_erasable(wallet)
    ledger.close_wallet(user_id, cause)
    accounts.erase(user_id)
