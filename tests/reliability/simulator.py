"""A deterministic simulator of the ledger's money flows, in the spirit of TigerBeetle's VOPR.

One seed drives everything: which user does what, which Stripe call times out, which answer
is lost, which webhook arrives twice or before the thing it speaks of, which save meets a
rival writer, and where a process dies. The same seed replays the same run (its ``trace``).

The world, all in one process and in memory:

- the event store (``eventsourcing``'s in-memory recorder), shared by every "process";
- processes, each a :class:`SimLedger` of its own over that store: the API (client commands),
  the settlement worker, the withdrawal worker, the cash-out worker, and Stripe's webhook
  handler. A crash kills one: its in-memory state (caches, the due index, a worker's
  position) is gone and a fresh one takes its place, as a restarted process would;
- :class:`SimStripe`, the payment and payout gateways, keeping every refund and transfer it
  made (Stripe's side of the truth), replaying idempotency keys as Stripe does.

Faults, each chosen by the seed:

- at the Stripe boundary: a timeout before the call (nothing made), a lost response (made,
  the caller hears nothing), a refusal for good, a refund that ends ``failed`` at once, a
  look-up that times out, and a crash of the calling process before or after the call;
- between the phases of the two-phase flows: the process dies right after its save commits
  (a withdrawal or cash-out held but not yet paid, an outcome recorded but not acknowledged,
  a settlement saved but not reported), and the client or worker retries from scratch;
- version conflicts: just before a save, a rival process credits one token to a wallet the
  save touches, so the save conflicts for real and the ledger must retry on fresh state;
- webhooks: payments delivered once to three times, as ``payment_intent.succeeded`` and/or
  ``checkout.session.completed``, in any order; refunds failing later, their webhook sometimes
  arriving before the worker recorded the refund (``RetryLater``: delivered again later).

After the run the faults stop, everything pending is delivered and worked off, and
:meth:`Simulation.check` asserts rules §8 on a freshly replayed ledger plus what Stripe saw:
each (withdrawal, lot) refunded at most once and every refund Stripe made recorded; each
cash-out transferred at most once and every transfer recorded; the money that left Stripe
equals what the ledger says left; every deposit credited once; every acknowledged command's
effect present exactly once; nothing left pending.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

from application.cashouts import CashoutWorker
from application.ledger import Ledger
from application.ports import (
    AdjustableClock,
    PaymentRefused,
    PaymentUnavailable,
    PayoutAccount,
    Refund,
    RetryLater,
    Transfer,
)
from application.stripe_events import StripeEvents
from application.withdrawals import WithdrawalWorker
from domain.aggregate import Cause
from domain.errors import DomainError
from domain.wallet import Wallet
from tests.invariants import assert_ledger_invariants, totals

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
PRICE = 1  # cents per token (the default)


class Crash(BaseException):
    """The process died here (not an ``Exception``: nothing in the code may catch it)."""


# -- the world's pieces ------------------------------------------------------------------------


class SimLedger(Ledger):
    """A ledger "process" over a shared in-memory recorder, whose saves the simulator can
    make conflict (a rival writes first) or crash just after they commit."""

    def __init__(
        self, recorder: ApplicationRecorder | None, clock: AdjustableClock, sim: Simulation
    ) -> None:
        self._shared = recorder
        self.sim = sim
        super().__init__({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)

    def construct_recorder(self) -> ApplicationRecorder:
        return self._shared or super().construct_recorder()

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        self.sim.before_save(self, objs)
        recordings = super().save(*objs, **kwargs)
        self.sim.after_save(self)
        return recordings


@dataclass
class Locks:
    """One simulated process runs at a time: every lock is free."""

    @contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        yield True

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        yield


class Sessions:
    """Checkout sessions are not simulated: payments arrive as webhooks only."""

    def finish(self, **kwargs: Any) -> None:
        return None

    def owner_of(self, payment_intent_id: str) -> str | None:
        return None


@dataclass
class Accounts:
    """Every user has an enabled Connect account, except those the seed disabled."""

    disabled: set[str] = field(default_factory=set)

    def payout_account(self, user_id: str) -> PayoutAccount | None:
        return PayoutAccount(f"acct_{user_id[:8]}", user_id not in self.disabled)


@dataclass
class SimStripe:
    """Stripe's side: payments, refunds and transfers made, idempotency keys replayed, and
    the seed's faults at each call."""

    sim: Simulation
    payments: dict[str, tuple[UUID, int]] = field(default_factory=dict)  # pi -> (user, cents)
    refunds: dict[str, Refund] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> object id
    created: list[str] = field(default_factory=list)  # every object made, in order

    # -- refunds (the withdrawal worker) --
    def refund(
        self,
        *,
        payment_intent_id: str,
        cents: int,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Refund:
        self.sim.fault("refund.before")
        if idempotency_key in self.keys:
            made = self.refunds[self.keys[idempotency_key]]
        else:
            left = self.payments[payment_intent_id][1] - sum(
                r.cents
                for r in self.refunds.values()
                if r.payment_intent_id == payment_intent_id and r.made
            )
            if cents > left or self.sim.chance("refund.refused", 0.05):
                raise PaymentRefused("charge_already_refunded")
            status = "failed" if self.sim.chance("refund.failed_at_once", 0.05) else "succeeded"
            made = Refund(
                f"re_{len(self.refunds):05d}", status, cents, payment_intent_id, dict(metadata)
            )
            self.refunds[made.refund_id] = made
            self.keys[idempotency_key] = made.refund_id
            self.created.append(made.refund_id)
        self.sim.fault("refund.after")
        return made

    def find_refund(self, *, payment_intent_id: str, metadata: Mapping[str, str]) -> Refund | None:
        self.sim.fault("lookup")
        for refund in self.refunds.values():
            if refund.payment_intent_id == payment_intent_id and all(
                refund.metadata.get(k) == v for k, v in metadata.items()
            ):
                return refund
        return None

    def refunds_of(self, payment_intent_id: str) -> list[Refund]:
        return [r for r in self.refunds.values() if r.payment_intent_id == payment_intent_id]

    def payment_intent_metadata(self, payment_intent_id: str) -> Mapping[str, str] | None:
        paid = self.payments.get(payment_intent_id)
        return {"user_id": str(paid[0])} if paid else None

    def fail_later(self, refund_id: str) -> Refund:
        """Stripe reports a refund it made as failed (the card was closed, say)."""
        failed = Refund(**{**self.refunds[refund_id].__dict__, "status": "failed"})
        self.refunds[refund_id] = failed
        return failed

    # -- transfers (the cash-out worker) --
    def transfer(
        self,
        *,
        account_id: str,
        cents: int,
        transfer_group: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> Transfer:
        self.sim.fault("transfer.before")
        if idempotency_key in self.keys:
            made = self.transfers[self.keys[idempotency_key]]
        else:
            if self.sim.chance("transfer.refused", 0.05):
                raise PaymentRefused("insufficient_capabilities_for_transfer")
            made = Transfer(
                f"tr_{len(self.transfers):05d}", cents, account_id, transfer_group, dict(metadata)
            )
            self.transfers[made.transfer_id] = made
            self.keys[idempotency_key] = made.transfer_id
            self.created.append(made.transfer_id)
        self.sim.fault("transfer.after")
        return made

    def find_transfer(self, *, transfer_group: str) -> Transfer | None:
        self.sim.fault("lookup")
        found = [t for t in self.transfers.values() if t.transfer_group == transfer_group]
        return found[0] if found else None


# -- the simulation ----------------------------------------------------------------------------


@dataclass
class Acknowledged:
    """A client command that returned normally: its effect must be in the stream, once."""

    kind: str  # withdrawal | cashout | adjustment
    user: UUID
    ref: UUID
    tokens: int


class Simulation:
    """One seeded run; :meth:`run` then :meth:`check`. ``trace`` lists what happened."""

    USERS = 5

    def __init__(self, seed: int, steps: int = 250, stripe: type[SimStripe] = SimStripe) -> None:
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.faults_on = True
        self.trace: list[str] = []
        self.clock = AdjustableClock(START, frozen=True)
        self.store = SimLedger(None, self.clock, self).recorder  # the shared event store
        self.stripe = stripe(self)
        self.accounts = Accounts()
        self.users = [UUID(int=self.rng.getrandbits(128)) for _ in range(self.USERS)]
        self.webhooks: list[dict[str, Any]] = []  # Stripe's queue of undelivered events
        self.acknowledged: list[Acknowledged] = []
        self.retries: list[Callable[[], object]] = []  # client commands to try again
        self.crashes: dict[str, int] = {}
        self._rival_depth = 0
        self.processes: dict[str, SimLedger] = {}
        for name in ("api", "settlement", "withdrawals", "cashouts", "webhooks", "rival"):
            self.restart(name)

    # -- faults --
    def chance(self, what: str, p: float) -> bool:
        return self.faults_on and self.rng.random() < p

    def fault(self, where: str) -> None:
        """A Stripe call's boundary: maybe a timeout, a lost answer or a crash here."""
        if self.chance(f"{where}:crash", 0.04):
            self.note(f"crash at {where}")
            raise Crash(where)
        if self.chance(f"{where}:unavailable", 0.1):
            self.note(f"stripe unavailable at {where}")
            raise PaymentUnavailable(f"timeout at {where}")

    def before_save(self, process: SimLedger, objs: tuple[Any, ...]) -> None:
        if self._rival_depth or process is self.processes.get("rival"):
            return
        wallets = [o for o in objs if isinstance(o, Wallet)]
        if wallets and self.chance("conflict", 0.08):
            self._rival_depth += 1
            try:
                rival = self.processes["rival"]
                user = self.rng.choice(wallets).user_id
                ref = UUID(int=self.rng.getrandbits(128))
                rival.adjust(user, "credit", 1, "rival write", ref, Cause.admin("rival"))
                self.acknowledged.append(Acknowledged("adjustment", user, ref, 1))
                self.note(
                    f"rival wrote wallet {self.users.index(user) if user in self.users else '?'}"
                )
            finally:
                self._rival_depth -= 1

    def after_save(self, process: SimLedger) -> None:
        if not self._rival_depth and self.chance("save:crash", 0.04):
            self.note("crash after a save committed")
            raise Crash("after save")

    def restart(self, name: str) -> None:
        """A fresh process: a new ledger over the same store, and new workers on it."""
        ledger = SimLedger(self.store, self.clock, self)
        self.processes[name] = ledger
        if name == "withdrawals":
            self.refund_worker = WithdrawalWorker(ledger, self.stripe, Locks())  # type: ignore[arg-type]
        if name == "cashouts":
            self.cashout_worker = CashoutWorker(ledger, self.stripe, self.accounts, Locks())  # type: ignore[arg-type]
        if name == "webhooks":
            self.events = StripeEvents(ledger, self.stripe, Sessions(), Locks())  # type: ignore[arg-type]

    def note(self, text: str) -> None:
        self.trace.append(text)

    def in_process(self, name: str, work: Callable[[], object]) -> object:
        """Run ``work`` in process ``name``; a crash restarts the process."""
        try:
            return work()
        except Crash:
            self.crashes[name] = self.crashes.get(name, 0) + 1
            self.restart(name)
            return Crash

    # -- actions --
    def run(self) -> Simulation:
        actions: list[tuple[int, Callable[[], None]]] = [
            (4, self.pay),
            (3, self.deliver),
            (2, self.withdraw),
            (1, self.cash_out),
            (1, self.adjust),
            (2, self.challenge),
            (3, self.refund_pass),
            (2, self.cashout_pass),
            (1, self.settlement_pass),
            (2, self.tick),
            (1, self.fail_a_refund_later),
            (1, self.retry_client),
        ]
        weights = [w for w, _ in actions]
        for step in range(self.steps):
            action = self.rng.choices([a for _, a in actions], weights)[0]
            self.note(f"{step}: {action.__name__}")
            action()
        self.quiesce()
        return self

    def user(self) -> UUID:
        return self.rng.choice(self.users)

    def pay(self) -> None:
        user, cents = self.user(), self.rng.choice([100, 250, 1_000, 3_000])
        intent = f"pi_{len(self.stripe.payments):05d}"
        self.stripe.payments[intent] = (user, cents)
        meta = {"user_id": str(user), "tokens": str(cents // PRICE)}
        kinds = self.rng.sample(
            ["payment_intent.succeeded", "checkout.session.completed"], k=self.rng.randint(1, 2)
        )
        for kind in kinds:
            for _ in range(self.rng.choice([1, 1, 2, 3])):
                self.webhooks.append(self._event(kind, intent, cents, meta))
        self.rng.shuffle(self.webhooks)

    def _event(self, kind: str, intent: str, cents: int, meta: dict[str, str]) -> dict[str, Any]:
        if kind == "payment_intent.succeeded":
            obj = {"id": intent, "amount_received": cents, "currency": "usd", "metadata": meta}
        else:
            obj = {
                "id": f"cs_{intent}",
                "mode": "payment",
                "payment_status": "paid",
                "payment_intent": intent,
                "amount_total": cents,
                "currency": "usd",
                "metadata": meta,
            }
        return {"id": f"evt_{self.rng.getrandbits(32):08x}", "type": kind, "data": {"object": obj}}

    def deliver(self) -> None:
        if not self.webhooks:
            return
        event = self.webhooks.pop(self.rng.randrange(len(self.webhooks)))

        def handle() -> object:
            return self.events.handle(event)

        try:
            outcome = self.in_process("webhooks", handle)
        except RetryLater:
            outcome = "retry later"
        if outcome in (Crash, "retry later"):
            self.webhooks.append(event)  # no 2xx: Stripe delivers it again
        self.note(f"webhook {event['type']}: {outcome if outcome is not Crash else 'crash'}")

    def _client(
        self, kind: str, user: UUID, ref: UUID, tokens: int, command: Callable[[], object]
    ) -> None:
        def attempt() -> None:
            api = self.processes["api"]
            try:
                self.in_process("api", command)  # a crash: the client heard nothing
            except DomainError as e:
                self.note(f"{kind} refused: {type(e).__name__}")
                return
            if self.processes["api"] is not api:  # crashed: it retries later, same id
                self.retries.append(attempt)
                return
            self.acknowledged.append(Acknowledged(kind, user, ref, tokens))
            self.note(f"{kind} acknowledged")

        attempt()

    def withdraw(self) -> None:
        user, ref, tokens = (
            self.user(),
            UUID(int=self.rng.getrandbits(128)),
            self.rng.choice([1, 50, 300, 2_000]),
        )
        cause = Cause.user(user)
        self._client(
            "withdrawal",
            user,
            ref,
            tokens,
            lambda: self.processes["api"].request_withdrawal(user, ref, tokens, cause),
        )

    def cash_out(self) -> None:
        user, ref, tokens = (
            self.user(),
            UUID(int=self.rng.getrandbits(128)),
            self.rng.choice([1_000, 1_500]),
        )
        if self.rng.random() < 0.2:
            self.accounts.disabled.add(str(user))
        cause = Cause.user(user)
        self._client(
            "cashout",
            user,
            ref,
            tokens,
            lambda: self.processes["api"].request_cashout(user, ref, tokens, cause),
        )

    def adjust(self) -> None:
        user, ref, tokens = (
            self.user(),
            UUID(int=self.rng.getrandbits(128)),
            self.rng.choice([500, 1_200]),
        )
        admin = Cause.admin("sim")
        self._client(
            "adjustment",
            user,
            ref,
            tokens,
            lambda: self.processes["api"].adjust(user, "credit", tokens, "prize", ref, admin),
        )

    def challenge(self) -> None:
        owner, api = self.user(), self.processes["api"]
        starts = (self.clock.now() + timedelta(hours=self.rng.randint(2, 30))).replace(
            minute=0, second=0, microsecond=0
        )
        try:
            created = api.create_challenge(
                owner,
                Cause.user(owner),
                challenge_id=UUID(int=self.rng.getrandbits(128)),
                name="Daily walk",
                starts_at=starts,
                ends_at=starts + timedelta(days=1),
                entry_stake=self.rng.choice([0, 10, 100]),
                grace=self.rng.choice([0, 5]),
            )
            api.publish(created.challenge_id, owner, Cause.user(owner), "UTC")
            for joiner in self.rng.sample(self.users, k=self.rng.randint(0, 3)):
                api.join(created.invite_code, joiner, "UTC", Cause.user(joiner))
            self.note("challenge opened")
        except DomainError as e:
            self.note(f"challenge refused: {type(e).__name__}")
        except Crash:
            self.crashes["api"] = self.crashes.get("api", 0) + 1
            self.restart("api")
            self.note("challenge crashed")

    def refund_pass(self) -> None:
        done = self.in_process("withdrawals", self.refund_worker.run_pass)
        self.note(f"refund pass: {'crash' if done is Crash else 'ok'}")

    def cashout_pass(self) -> None:
        done = self.in_process("cashouts", self.cashout_worker.run_pass)
        self.note(f"cash-out pass: {'crash' if done is Crash else 'ok'}")

    def settlement_pass(self) -> None:
        done = self.in_process("settlement", self.processes["settlement"].settle_due)
        self.note(f"settlement pass: {'crash' if done is Crash else 'ok'}")

    def tick(self) -> None:
        self.clock.advance(timedelta(hours=self.rng.choice([1, 6, 30, 200])))

    def fail_a_refund_later(self) -> None:
        made = [r for r in self.stripe.refunds.values() if r.status == "succeeded"]
        if not made:
            return
        failed = self.stripe.fail_later(self.rng.choice(made).refund_id)
        obj = {
            "id": failed.refund_id,
            "status": "failed",
            "amount": failed.cents,
            "payment_intent": failed.payment_intent_id,
            "metadata": dict(failed.metadata),
        }
        self.webhooks.append(
            {"id": f"evt_f{failed.refund_id}", "type": "refund.updated", "data": {"object": obj}}
        )
        self.note(f"refund {failed.refund_id} failed at Stripe")

    def retry_client(self) -> None:
        if self.retries:
            self.retries.pop(0)()

    def quiesce(self) -> None:
        """Faults off: deliver everything, let every worker finish, settle what is due."""
        self.faults_on = False
        self.note("quiesce")
        for _ in range(20):
            while self.retries:
                self.retries.pop(0)()
            while self.webhooks:
                for _ in range(len(self.webhooks)):
                    self.deliver()
                self.refund_worker.run_pass()
            self.refund_worker.run_pass()
            self.cashout_worker.run_pass()
            self.clock.advance(timedelta(days=3))
            self.processes["settlement"].settle_due()
            if not self.webhooks and not self.retries and not self._pending():
                return
        raise AssertionError("the simulation did not settle down in 20 rounds")

    def _pending(self) -> bool:
        fresh = SimLedger(self.store, self.clock, self)
        t = totals(fresh)
        return bool(t.withdrawal_pending or t.cashout_pending or t.open_pools)

    # -- the checks --
    def check(self) -> dict[str, int]:
        """rules §8 on a freshly replayed ledger, and the ledger against Stripe's records."""
        fresh = SimLedger(self.store, self.clock, self)
        t = assert_ledger_invariants(fresh)
        assert t.withdrawal_pending == 0 and t.cashout_pending == 0, t
        paid = sum(cents for _, cents in self.stripe.payments.values())
        assert t.deposited == paid // PRICE, f"deposits credited {t.deposited}, paid {paid}"

        refunded_at_stripe = 0
        for user in self.users:
            wallet = fresh.wallet_of(user) if self._has_wallet(fresh, user) else None
            if wallet is None:
                continue
            for hold in wallet.withdrawals.values():
                for lot, tokens in hold.lots.items():
                    ours = [
                        r
                        for r in self.stripe.refunds.values()
                        if r.metadata.get("withdrawal_id") == str(hold.withdrawal_id)
                        and r.metadata.get("lot_id") == lot
                    ]
                    assert len(ours) <= 1, f"lot {lot} of {hold.withdrawal_id} refunded twice"
                    outcome = str(hold.outcome(lot))
                    made = [r for r in ours if r.status == "succeeded"]
                    if outcome == "refunded":
                        assert made and hold.refund_ids[lot] == made[0].refund_id, (hold, ours)
                        assert made[0].cents == tokens * PRICE
                        refunded_at_stripe += made[0].cents
                    else:
                        assert not made, f"Stripe refunded {made} but the ledger says {outcome}"
            for hold in wallet.cashouts.values():
                ours = [
                    x
                    for x in self.stripe.transfers.values()
                    if x.transfer_group == str(hold.cashout_id)
                ]
                assert len(ours) <= 1, f"cash-out {hold.cashout_id} transferred twice"
                if hold.status == "settled":
                    assert (
                        ours
                        and ours[0].transfer_id == hold.transfer_id
                        and ours[0].cents == hold.cents
                    )
                else:
                    assert not ours, f"Stripe transferred {ours} but the cash-out is {hold.status}"
        assert t.refunded * PRICE == refunded_at_stripe, (t.refunded, refunded_at_stripe)
        left = sum(r.cents for r in self.stripe.refunds.values() if r.status == "succeeded")
        assert left == refunded_at_stripe, "a refund Stripe made is not in the ledger"
        transferred = sum(x.cents for x in self.stripe.transfers.values())
        assert t.cashed_out * PRICE == transferred, (t.cashed_out, transferred)

        for ack in self.acknowledged:
            wallet = fresh.wallet_of(ack.user)
            if ack.kind == "withdrawal":
                hold = wallet.withdrawals[str(ack.ref)]
                assert sum(hold.lots.values()) == ack.tokens, (ack, hold)
            elif ack.kind == "cashout":
                assert wallet.cashouts[str(ack.ref)].tokens == ack.tokens, ack
        adjusted = sum(a.tokens for a in self.acknowledged if a.kind == "adjustment")
        assert t.adjusted_in == adjusted, (t.adjusted_in, adjusted)
        return {
            "refunds": len(self.stripe.refunds),
            "transfers": len(self.stripe.transfers),
            "crashes": sum(self.crashes.values()),
            "acknowledged": len(self.acknowledged),
            "events": fresh.head(),
        }

    @staticmethod
    def _has_wallet(ledger: Ledger, user: UUID) -> bool:
        try:
            ledger.wallet_of(user)
        except DomainError:
            return False
        return True
