"""Erasing a user's personal data (SPEC §7): allowed only once their wallet is empty.

Personal data lives in the users table, never in events, so erasure changes no event: the
ledger stays intact and auditable, its events naming an id that no longer leads to a person.
It is refused while the wallet holds any token (available, frozen by a dispute) or any hold
(a stake, a penalty held in a running challenge's pool, a withdrawal or cash-out awaiting its
outcome): those tokens are still the user's, and someone must be able to claim them.

The decision is made on the wallet aggregate loaded from the event store, never on a read
model, so a lagging projection cannot let an erasure through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol
from uuid import UUID

from application.ledger import Ledger
from domain.errors import Conflict, NotFound
from domain.tokens import total
from domain.wallet import Wallet


@dataclass(frozen=True)
class Remaining:
    """What a wallet still holds, in tokens."""

    available: int = 0
    frozen: int = 0
    staked: int = 0
    penalties: int = 0  # charged into running challenges' pools, not yet settled
    pending: int = 0  # withdrawals and cash-outs awaiting their outcome

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


def remaining_in(wallet: Wallet | None) -> Remaining:
    """What ``wallet`` still holds; a user who never had a wallet holds nothing."""
    if wallet is None:
        return Remaining()
    return Remaining(
        available=wallet.available,
        frozen=wallet.frozen,
        staked=wallet.staked,
        penalties=sum(total(held) for held in wallet.penalties.values()),
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


def erase_user(ledger: Ledger, accounts: Accounts, user_id: UUID) -> None:
    """Erase the user's personal data and end their sessions, if their wallet is empty.

    Raises `WalletNotEmpty` (nothing changed) otherwise. The caller checks the user exists.
    """
    try:
        wallet: Wallet | None = ledger.wallet_of(user_id)
    except NotFound:
        wallet = None
    check_erasable(wallet)
    accounts.erase(user_id)
