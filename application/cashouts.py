"""Cash-outs through Stripe Connect (rules §2, §6): asking for one, and the worker that pays it.

Phase one (:class:`Cashouts.request`) holds the tokens in the wallet, once the user has a
Connect account Stripe lets receive payouts. Phase two is the :class:`CashoutWorker`: for each
held cash-out it makes ONE Stripe Transfer and records its outcome:

1. Look the transfer up by its transfer group (the cash-out id). The worker cannot know
   whether an earlier pass (or a copy that crashed) already called Stripe, and Stripe keeps
   idempotency keys for only 24 h and replays a cached error, so it always looks first.
2. None found: transfer ``tokens × the cash-out's token price`` cents to the account, outside
   any database transaction, with idempotency key ``{cashout_id}``, ``transfer_group =
   cashout_id`` and our ids in its metadata. A user whose account can no longer receive
   payouts gets the tokens back instead.
3. Record the outcome: settled (with the transfer id), or failed (tokens back to their lots)
   if Stripe said no for good. An unknown outcome (network, Stripe down) records nothing: the
   next pass looks the transfer up again.

Work comes from the event stream (``CashoutRequested`` notifications), not a read model, like
the withdrawal worker; a PostgreSQL advisory lock lets one copy work per pass. While
``PAYOUTS_PAUSED`` is set a pass does nothing: held cash-outs wait, none is refused or lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from application.ledger import Ledger
from application.ports import (
    Locks,
    PaymentRefused,
    PaymentUnavailable,
    PayoutAccount,
    PayoutAccounts,
    PayoutGateway,
    RetryLater,
    Transfer,
)
from application.receipts import CashoutHeld
from domain.aggregate import Cause
from domain.cashouts import PENDING, CashoutHold
from domain.errors import (
    NotCashoutable,
    NotFound,
    OutcomeAlreadyRecorded,
    PayoutAccountNotEnabled,
)
from domain.wallet import Wallet

log = logging.getLogger("peerpush.cashouts")

LOCK_NAME = "cashout-worker"
PAGE = 1000


def never_paused() -> bool:
    return False


class Cashouts:
    """Asking for a cash-out: only to an enabled Connect account (rules §2)."""

    def __init__(
        self, ledger: Ledger, accounts: PayoutAccounts, gateway: PayoutGateway | None = None
    ) -> None:
        self.ledger, self.accounts, self.gateway = ledger, accounts, gateway

    def link_account(self, user_id: UUID, return_url: str) -> tuple[PayoutAccount, str]:
        """The user's Connect Express account, created once (its Stripe idempotency key is
        the user's), and a fresh onboarding link that comes back to ``return_url``. Payouts
        are enabled when Stripe says so (``account.updated``, `ConnectEvents`)."""
        assert self.gateway is not None, "linking accounts needs the payout gateway"
        account = self.accounts.payout_account(str(user_id))
        if account is None:
            account_id = self.gateway.create_account(
                user_id=str(user_id), idempotency_key=f"connect-account:{user_id}"
            )
            self.accounts.link_payout_account(str(user_id), account_id)
            account = self.accounts.payout_account(str(user_id))
            assert account is not None
        url = self.gateway.onboarding_link(
            account_id=account.account_id, refresh_url=return_url, return_url=return_url
        )
        return account, url

    def request(self, user_id: UUID, cashout_id: UUID, tokens: int, cause: Cause) -> CashoutHeld:
        account = self.accounts.payout_account(str(user_id))
        if account is None or not account.payouts_enabled:
            raise PayoutAccountNotEnabled(
                "link a Stripe account that can receive payouts first (POST /v1/payout-account)"
            )
        try:
            return self.ledger.request_cashout(user_id, cashout_id, tokens, cause)
        except NotFound:  # no wallet yet: nothing to cash out
            raise NotCashoutable(tokens, 0, "cashoutable_lots") from None


@dataclass
class CashoutPass:
    """What one pass did (for logs, metrics and tests)."""

    worked: bool = True
    paused: bool = False
    settled: list[UUID] = field(default_factory=list)
    failed: list[UUID] = field(default_factory=list)
    unresolved: list[UUID] = field(default_factory=list)


class CashoutWorker:
    """Makes and records the transfers of requested cash-outs; resumable and idempotent."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: PayoutGateway,
        accounts: PayoutAccounts,
        locks: Locks,
        *,
        paused: Callable[[], bool] = never_paused,
    ) -> None:
        self.ledger, self.gateway, self.accounts, self.locks = ledger, gateway, accounts, locks
        self.paused = paused
        self._position = 0
        self._wallets: set[UUID] = set()  # wallets with (possibly) pending cash-outs

    def run_pass(self) -> CashoutPass:
        if self.paused():
            return CashoutPass(worked=False, paused=True)
        with self.locks.try_hold(LOCK_NAME) as mine:
            if not mine:
                return CashoutPass(worked=False)
            self._discover()
            done = CashoutPass()
            for wallet_id in sorted(self._wallets):
                if self._work_wallet(wallet_id, done):
                    self._wallets.discard(wallet_id)
            return done

    def __call__(self) -> CashoutPass:
        return self.run_pass()

    def _discover(self) -> None:
        while True:
            batch = self.ledger.recorder.select_notifications(
                self._position + 1, PAGE, topics=(Wallet.CashoutRequested.TOPIC,)
            )
            for notification in batch:
                self._wallets.add(UUID(str(notification.originator_id)))
                self._position = notification.id
            if len(batch) < PAGE:
                return

    def _work_wallet(self, wallet_id: UUID, done: CashoutPass) -> bool:
        """Give each pending cash-out its outcome; True when none is left pending."""
        wallet: object = self.ledger.repository.get(wallet_id)
        assert isinstance(wallet, Wallet), f"{wallet_id} is not a wallet"
        settled = True
        for hold in list(wallet.cashouts.values()):
            if hold.status != PENDING:
                continue
            outcome = self._pay(wallet, hold)
            if outcome == "settled":
                done.settled.append(hold.cashout_id)
            elif outcome == "failed":
                done.failed.append(hold.cashout_id)
            else:
                done.unresolved.append(hold.cashout_id)
                settled = False
        return settled

    def _pay(self, wallet: Wallet, hold: CashoutHold) -> str:
        cashout_id = str(hold.cashout_id)
        cause = Cause.worker("cashouts", cashout_id)
        try:
            transfer = self.gateway.find_transfer(transfer_group=cashout_id)
            if transfer is None:
                account = self.accounts.payout_account(str(wallet.user_id))
                if account is None or not account.payouts_enabled:
                    return self._fail(wallet, hold, "payout_account_disabled", cause)
                transfer = self.gateway.transfer(
                    account_id=account.account_id,
                    cents=hold.cents,
                    transfer_group=cashout_id,
                    idempotency_key=cashout_id,
                    metadata={"cashout_id": cashout_id, "user_id": str(wallet.user_id)},
                )
        except PaymentRefused as e:
            return self._fail(wallet, hold, e.code, cause)
        except PaymentUnavailable as e:
            log.warning("transfer of cash-out %s unresolved, retried later: %s", cashout_id, e)
            return "unresolved"
        return self._settle(wallet, hold, transfer, cause)

    def _settle(self, wallet: Wallet, hold: CashoutHold, transfer: Transfer, cause: Cause) -> str:
        with contextlib.suppress(OutcomeAlreadyRecorded):  # another copy recorded it first
            self.ledger.settle_cashout(wallet.user_id, hold.cashout_id, transfer.transfer_id, cause)
        return "settled"

    def _fail(self, wallet: Wallet, hold: CashoutHold, reason: str, cause: Cause) -> str:
        with contextlib.suppress(OutcomeAlreadyRecorded):
            self.ledger.fail_cashout(wallet.user_id, hold.cashout_id, reason, cause)
        return "failed"


def transfer_of(obj: Any) -> Transfer:
    """A Stripe transfer object (from the API or a webhook) as the application sees it."""
    values = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    reversals = (values.get("reversals") or {}).get("data") or []
    return Transfer(
        transfer_id=str(values["id"]),
        cents=int(values.get("amount") or 0),
        destination=str(values.get("destination") or ""),
        transfer_group=str(values.get("transfer_group") or ""),
        metadata={str(k): str(v) for k, v in (values.get("metadata") or {}).items()},
        reversals=tuple((str(r["id"]), int(r.get("amount") or 0)) for r in reversals),
    )


def record_transfer_reversals(ledger: Ledger, transfer: Transfer, cause: Cause) -> str:
    """``transfer.reversed``: give back each reversal of one of our cash-outs' transfers once.

    Tokens = reversed cents ÷ the cash-out's own token price. A transfer without our
    metadata is not ours; one whose settlement is not recorded yet is retried by Stripe.
    """
    try:
        cashout_id = UUID(transfer.metadata.get("cashout_id", ""))
        user_id = UUID(transfer.metadata.get("user_id", ""))
    except ValueError:
        return "ignored"
    try:
        hold = ledger.wallet_of(user_id).cashout(cashout_id)
    except NotFound:
        return "ignored"
    if hold.status == PENDING:
        raise RetryLater(f"cash-out {cashout_id} is not recorded as transferred yet")
    returned = 0
    for reversal_id, cents in transfer.reversals:
        tokens = cents // hold.token_price
        if tokens > 0 and reversal_id not in hold.reversals:
            returned += ledger.reverse_cashout(user_id, cashout_id, reversal_id, tokens, cause)
    return "reversed" if returned else "already_recorded"


class ConnectEvents:
    """What each Stripe Connect webhook means (already verified with the Connect secret).

    ``account.updated`` records whether the account may receive payouts; ``transfer.reversed``
    gives reversed tokens back. An event whose ``livemode`` is not the configured key's
    (a test event sent to a live endpoint, or the reverse) is ignored.
    """

    def __init__(
        self,
        ledger: Ledger,
        accounts: PayoutAccounts,
        *,
        livemode: bool,
    ) -> None:
        self.ledger, self.accounts, self.livemode = ledger, accounts, livemode

    def handle(self, event: Mapping[str, Any]) -> str:
        if bool(event.get("livemode")) != self.livemode:
            log.info("ignored Connect event %s: livemode differs", event.get("id"))
            return "ignored_livemode"
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping):
            return "ignored"
        cause = Cause.stripe(str(event.get("id", "")))
        kind = event.get("type")
        if kind == "account.updated":
            return self.account_updated(obj)
        if kind == "transfer.reversed":
            return record_transfer_reversals(self.ledger, transfer_of(obj), cause)
        return "ignored"

    def account_updated(self, account: Mapping[str, Any]) -> str:
        account_id = str(account.get("id") or "")
        enabled = bool(account.get("payouts_enabled"))
        user = self.accounts.record_payouts_enabled(account_id, enabled, self.ledger.clock.now())
        if user is None:
            return "ignored"
        return "payouts_enabled" if enabled else "payouts_disabled"
