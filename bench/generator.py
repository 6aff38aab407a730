"""Seeded, realistic ledger activity for the benchmarks (and the generator's test).

Three ways to run the same kind of activity — users depositing, drafting, publishing and
joining challenges, submitting proofs, voting (some rejections, with penalties), settling,
cancelling, withdrawing, admin adjustments and card disputes:

- `generate(ledger, events, seed)`: in process, in bulk. Aggregates are changed in memory with
  the domain's own methods, in simulated time, and saved with ``ledger.save(...)`` once per
  simulated day, so a stream of 1,000,000 events is written in minutes. Positions follow
  business time day by day.
- `CommandMix`: in process, one command at a time through the `Ledger`'s command methods (what
  the API calls), from any number of threads: the in-process throughput bench.
- `HttpSetup`: over HTTP against a running ``peerpush serve``: users registered and logged in,
  deposits paid through the (simulated) checkout or, in production, credited by an admin,
  challenges drafted and published; the HTTP bench then joins them with wrk.

The same seed gives the same stream (ids included); nothing reads the wall clock.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx

from application.ledger import INVITE_ALPHABET, Ledger
from domain.aggregate import Cause, LedgerAggregate
from domain.challenge import Challenge, Outcome
from domain.errors import DomainError
from domain.invite import InviteCode
from domain.rules import make_terms
from domain.verification import ACCEPTED, REJECTED, ProofFacts, Verification
from domain.wallet import Wallet

SEED = 20261125
FEE_BPS = 500  # a 5 % platform fee, so revenue has fees as well as forfeits
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


class World:
    """Users, their wallets and the week's challenges, kept in memory between saves."""

    def __init__(self, ledger: Ledger, events: int, seed: int = SEED) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.users = [self.new_id() for _ in range(max(40, events // 100))]
        self.zones = {u: self.rng.choice(ZONES) for u in self.users}
        self.wallets: dict[uuid.UUID, Wallet] = {}
        self.dirty: dict[uuid.UUID, LedgerAggregate] = {}
        self.saved = 0
        self.saves = 0
        self.challenges_per_week = max(2, events // 2_900)
        self.open_disputes: list[tuple[uuid.UUID, str]] = []
        self.refunded: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = []
        self.payment_intents = 0

    # -- plumbing ---------------------------------------------------------------------

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def touch(self, *aggregates: LedgerAggregate) -> None:
        for aggregate in aggregates:
            self.dirty[aggregate.id] = aggregate

    def flush(self) -> None:
        """One ``save`` (one transaction) of everything changed since the last one."""
        if self.dirty:
            self.saved += len(self.ledger.save(*self.dirty.values()))
            self.saves += 1
            self.dirty.clear()

    def wallet(self, user: uuid.UUID, cause: Cause, at: datetime) -> Wallet:
        wallet = self.wallets.get(user)
        if wallet is None:
            wallet = self.wallets[user] = Wallet.open(user, cause, at)
            self.touch(wallet)
        return wallet

    def at(self, day: datetime, hours: float) -> datetime:
        return day + timedelta(hours=hours, seconds=self.rng.randrange(3_600))

    # -- money ------------------------------------------------------------------------

    def deposit(self, user: uuid.UUID, at: datetime, at_least: int = 0) -> Wallet:
        cause = Cause.stripe(f"evt_{self.rng.getrandbits(48):012x}")
        wallet = self.wallet(user, cause, at)
        self.payment_intents += 1
        cents = max(at_least, self.rng.choice((1_000, 2_000, 5_000, 10_000, 20_000)))
        wallet.credit_deposit(
            f"pi_{self.payment_intents:08d}",
            cents,
            self.ledger.settings.token_price_usd_cents,
            self.ledger.settings.refund_window,
            cause,
            at,
        )
        self.touch(wallet)
        return wallet

    def funded(self, user: uuid.UUID, tokens: int, at: datetime) -> Wallet:
        wallet = self.wallet(user, Cause.user(user), at)
        if wallet.available < tokens:
            wallet = self.deposit(user, at, at_least=tokens * 2)
        return wallet

    def withdrawals(self, day: datetime) -> None:
        """Refunds to the card, lot by lot; a few refused, a few failing a week later."""
        for user, withdrawal, lot in self.refunded:
            self.wallets[user].fail_refund(withdrawal, lot, Cause.stripe("evt_fail"), day)
            self.touch(self.wallets[user])
        self.refunded = []
        for user in self.rng.sample(list(self.wallets), len(self.wallets) // 12):
            wallet, at = self.wallets[user], self.at(day, 9)
            refundable = wallet.refundable(at)
            if refundable < 100:
                continue
            withdrawal = self.new_id()
            cause = Cause.user(user, f"req_{withdrawal.hex[:8]}")
            taken = wallet.request_withdrawal(
                withdrawal, self.rng.randint(100, refundable), cause, at
            )
            worker = Cause.worker("withdrawals", f"wd_{withdrawal.hex[:8]}")
            for lot, _tokens in taken:
                if self.rng.random() < 0.9:
                    wallet.record_refund(
                        withdrawal, lot, f"re_{self.new_id().hex[:16]}", worker, at
                    )
                    if self.rng.random() < 0.03:
                        self.refunded.append((user, withdrawal, lot))
                else:
                    wallet.refuse_refund(withdrawal, lot, "card expired", worker, at)
            self.touch(wallet)

    def adjustments(self, day: datetime) -> None:
        admin = Cause.admin(self.users[0], "support")
        for user in self.rng.sample(list(self.wallets), len(self.wallets) // 40):
            wallet, at = self.wallets[user], self.at(day, 10)
            if self.rng.random() < 0.6:
                wallet.credit_adjustment(
                    self.new_id(), self.rng.randint(50, 500), "goodwill", admin, at
                )
            elif wallet.available:
                tokens = self.rng.randint(1, min(wallet.available, 300))
                wallet.debit_adjustment(self.new_id(), tokens, "duplicate credit", admin, at)
            self.touch(wallet)

    def disputes(self, day: datetime) -> None:
        """Last week's disputes are decided (won or lost); a few new ones freeze a lot."""
        for user, dispute in self.open_disputes:
            wallet = self.wallets[user]
            cause = Cause.stripe(f"evt_{dispute}")
            if self.rng.random() < 0.5:
                wallet.win_dispute(dispute, cause, self.at(day, 11))
            else:
                paid = wallet.lot(wallet.disputes[dispute]).cents_paid
                cents = paid if self.rng.random() < 0.7 else max(1, paid // 2)
                wallet.lose_dispute(dispute, cents, cause, self.at(day, 11))
            self.touch(wallet)
        self.open_disputes = []
        for user in self.rng.sample(list(self.wallets), len(self.wallets) // 200):
            wallet = self.wallets[user]
            if not wallet.deposits:
                continue
            payment_intent = self.rng.choice(list(wallet.deposits))
            dispute = f"dp_{self.new_id().hex[:12]}"
            before = len(wallet.pending_events)
            wallet.open_dispute(payment_intent, dispute, Cause.stripe(dispute), self.at(day, 12))
            if len(wallet.pending_events) > before and dispute in wallet.disputes:
                self.open_disputes.append((user, dispute))
            self.touch(wallet)

    # -- challenges -------------------------------------------------------------------

    def draft_and_fill(self, week: datetime) -> list[Challenge]:
        """Day 0: challenges drafted, some edited, published and joined; a few cancelled."""
        rng, limits = self.rng, self.ledger.settings.challenge_limits
        running = []
        for _ in range(self.challenges_per_week):
            owner = rng.choice(self.users)
            at = self.at(week, rng.uniform(0, 11))
            cause = Cause.user(owner, f"req_{rng.getrandbits(32):08x}")
            stake = rng.choice((0, 100, 200, 500, 500, 1_000, 1_000, 2_000))
            terms: dict[str, Any] = dict(
                name=f"Challenge {rng.getrandbits(24):06x}",
                starts_at=week + timedelta(days=1),
                ends_at=week + timedelta(days=4),
                entry_stake=stake,
                max_participants=10,
                window_start="00:00",
                window_end="00:00",
                timezone="UTC",
                scope="challenge_tz",
                verification_mode=rng.choice(("auto", "quorum", "quorum")),
                quorum_pct=60,
                grace=rng.choice((0, 0, 1)),
                penalty_tokens=rng.choice((0, 50, 100)),
                proof_types=["photo", "text"],
            )
            code = "".join(rng.choice(INVITE_ALPHABET) for _ in range(6))
            challenge_id = self.new_id()
            challenge = Challenge.draft(
                challenge_id, owner, code, make_terms(limits, **terms), cause, at
            )
            self.touch(challenge, InviteCode.claim(code, challenge_id, cause, at))
            if rng.random() < 0.1:
                terms["name"] += " (edited)"
                at += timedelta(minutes=5)
                challenge.edit(owner, make_terms(limits, **terms), cause, at)
            at += timedelta(minutes=10)
            wallet = self.funded(owner, stake, at)
            wallet.lock_stake(challenge_id, challenge.publish(owner, None, cause, at), cause, at)
            self.touch(wallet)
            size = 0 if rng.random() < 0.05 else rng.randint(2, 9)
            for user in rng.sample(self.users, size):
                if user == owner:
                    continue
                at += timedelta(minutes=rng.randint(1, 60))
                joiner = Cause.user(user, f"req_{rng.getrandbits(32):08x}")
                wallet = self.funded(user, stake, at)
                if challenge.join(user, self.zones[user], joiner, at):
                    wallet.lock_stake(challenge_id, stake, joiner, at)
                self.touch(wallet)
            if rng.random() < 0.03:  # the owner changes their mind before the start
                self.cancel(challenge, owner, cause, at + timedelta(minutes=30))
            else:
                running.append(challenge)
        return running

    def cancel(
        self, challenge: Challenge, by: uuid.UUID | None, cause: Cause, at: datetime
    ) -> None:
        for participant in challenge.cancel(by, False, "cancelled", cause, at):
            wallet = self.wallets[participant.user_id]
            wallet.return_holds(challenge.id, cause, at)
            self.touch(wallet)
        self.touch(challenge)

    def play_day(
        self, challenge: Challenge, day: datetime, verifications: dict[uuid.UUID, Verification]
    ) -> None:
        """One day of submissions; peers vote on those that need review."""
        rng = self.rng
        members = list(challenge.participants.values())
        for member in members:
            if rng.random() > 0.85:
                continue
            user, at = member.user_id, self.at(day, rng.uniform(6, 20))
            cause = Cause.user(user, f"req_{rng.getrandbits(32):08x}")
            if rng.random() < 0.3:
                sha = f"{rng.getrandbits(20):064x}"  # small space: some duplicates get flagged
                proof = ProofFacts(
                    "photo", f"proofs/{rng.getrandbits(64):x}", "image/jpeg", 2**20, sha
                )
            else:
                proof = ProofFacts("text", f"proofs/{rng.getrandbits(64):x}", "text/plain", 140, "")
            made = challenge.receive_submission(user, proof.proof_type, proof.photo, cause, at)
            verification = Verification.submit(
                made.submission_id,
                challenge.id,
                user,
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
            self.touch(challenge, verification)
            if made.status != "pending":
                continue
            verifications[made.submission_id] = verification
            honest = rng.random() < 0.85
            for peer in rng.sample(members, len(members)):
                if peer.user_id == user or rng.random() < 0.15:  # some peers never vote
                    continue
                at += timedelta(minutes=rng.randint(1, 20))
                voter = Cause.user(peer.user_id, f"req_{rng.getrandbits(32):08x}")
                approve = rng.random() < (0.9 if honest else 0.2)
                verdict = verification.vote(peer.user_id, approve, True, voter, at)
                if verdict is None:
                    continue
                penalty = 0
                if verdict == REJECTED and challenge.terms.penalty_tokens:
                    wallet = self.wallets[user]
                    penalty = wallet.charge_penalty(
                        challenge.id, made.submission_id, challenge.terms.penalty_tokens, voter, at
                    )
                    self.touch(wallet)
                verification.decide(verdict, penalty, voter, at)
                challenge.record_verdict(made.submission_id, verdict, penalty, voter, at)
                assert verdict in (ACCEPTED, REJECTED)
                break

    def settle(
        self, challenge: Challenge, at: datetime, verifications: dict[uuid.UUID, Verification]
    ) -> None:
        cause = Cause.worker("settlement", f"sweep:{at.isoformat()}")
        outcome = challenge.settle(FEE_BPS, self.ledger.settings.settlement_delay, cause, at)
        # Only challenges with participants are settled here: never a cancellation.
        assert isinstance(outcome, Outcome)
        for result in outcome.results:
            wallet = self.wallets[result.user_id]
            wallet.settle_stake(challenge.id, result.share, cause, at)
            self.touch(wallet)
        for submission_id in outcome.pending_submissions:
            verification = verifications.pop(submission_id)
            verification.close(cause, at)
            self.touch(verification)
        self.touch(challenge)

    # -- a week -----------------------------------------------------------------------

    def week(self, week: datetime) -> None:
        for user in self.rng.sample(self.users, len(self.users) // 4):  # weekly top-ups
            self.deposit(user, self.at(week, self.rng.uniform(0, 20)))
        running = self.draft_and_fill(week)
        self.flush()
        starts = week + timedelta(days=1)
        worker = Cause.worker("settlement", f"sweep:{starts.isoformat()}")
        for challenge in [c for c in running if len(c.participants) < 2]:
            self.cancel(challenge, None, worker, starts + timedelta(minutes=1))
            running.remove(challenge)
        verifications: dict[uuid.UUID, Verification] = {}
        for d in range(3):
            for challenge in running:
                self.play_day(challenge, starts + timedelta(days=d), verifications)
            self.flush()
        settles_at = week + timedelta(days=5, minutes=5)
        for challenge in running:
            self.settle(challenge, settles_at, verifications)
        self.flush()
        self.adjustments(week + timedelta(days=5))
        self.disputes(week + timedelta(days=5))
        self.withdrawals(week + timedelta(days=6))
        self.flush()


def generate(ledger: Ledger, events: int, seed: int = SEED) -> World:
    """At least ``events`` events of realistic activity, written in batches (one save a
    simulated day); the same seed writes the same stream."""
    world = World(ledger, events, seed)
    week = START
    while world.saved < events:
        world.week(week)
        week += timedelta(days=7)
    return world


# -- one command at a time, in process ------------------------------------------------------


@dataclass
class CommandMix:
    """A realistic mix of the commands users send, through the `Ledger`'s command methods.

    Shared by every caller thread: each call of `step` draws one kind of command (deposits,
    joins, drafts with their publish, admin adjustments, withdrawal requests) with its own
    random generator, seeded from the mix's seed and the thread's number. A refusal (the
    domain saying no, e.g. a withdrawal larger than what can be refunded) counts as a command
    done: it read, decided and answered.
    """

    ledger: Ledger
    seed: int = SEED
    users: int = 64
    challenges: list[str] = field(default_factory=list)  # invite codes open to join
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.user_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(self.users)]
        self.owner = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.admin = Cause.admin(self.owner, "bench")

    def prepare(self, challenges: int = 20) -> None:
        """Every user funded, and some open challenges with a 1-token stake to join."""
        for n, user in enumerate([*self.user_ids, self.owner]):
            self.ledger.credit_deposit(user, f"pi_mix_{n:06d}", 100_000, Cause.user(user))
        for _ in range(challenges):
            self.draft_and_publish(self.owner)

    def draft_and_publish(self, owner: uuid.UUID) -> int:
        now = self.ledger.clock.now()
        cause = Cause.user(owner)
        made = self.ledger.create_challenge(
            owner,
            cause,
            name="Mix challenge",
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=4),
            entry_stake=1,
            max_participants=500,
        )
        self.ledger.publish(made.challenge_id, owner, cause)
        with self.lock:
            self.challenges.append(made.invite_code)
        return 2

    def step(self, rng: random.Random) -> int:
        """One draw of the mix; returns how many commands it sent."""
        user = rng.choice(self.user_ids)
        cause = Cause.user(user)
        kind = rng.random()
        try:
            if kind < 0.45:
                self.ledger.join(rng.choice(self.challenges), user, "UTC", cause)
            elif kind < 0.70:
                pi = f"pi_{rng.getrandbits(64):016x}"
                self.ledger.credit_deposit(user, pi, rng.choice((500, 1_000, 2_000)), cause)
            elif kind < 0.78:
                return self.draft_and_publish(user)
            elif kind < 0.90:
                direction = "credit" if rng.random() < 0.6 else "debit"
                self.ledger.adjust(user, direction, 5, "bench", uuid.uuid4(), self.admin)
            else:
                self.ledger.request_withdrawal(user, uuid.uuid4(), rng.randint(1, 50), cause)
        except DomainError:
            pass
        return 1


# -- over HTTP ------------------------------------------------------------------------------


PASSWORD = "correct horse battery"


@dataclass
class HttpSetup:
    """Users, deposits and published challenges made through the API itself (rate limits off).

    ``tokens`` are the joiners' access tokens; ``codes`` the invite codes of challenges owned
    by other users (one owner per thread), each with a 1-token stake and room for every
    joiner, so every (joiner, challenge) pair is one first join.

    Deposits go through the path the server has: development's simulated checkout, or, given
    ``promote`` (production: no simulated Stripe), an admin's credit (``POST
    /v1/admin/adjustments``) from an account ``promote(email)`` made an admin (``peerpush
    create-admin``). ``threads`` clients work at once (each with a connection of its own):
    set-up is most of a quick bench's time, and the server has more than one process.
    """

    base_url: str
    seed: int = SEED
    tokens: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    admin: str = ""  # the admin's access token, when deposits are admin credits

    def run(
        self,
        users: int,
        challenges: int,
        tokens_each: int = 1_000,
        client: httpx.Client | None = None,
        *,
        promote: Callable[[str], None] | None = None,
        threads: int = 1,
    ) -> HttpSetup:
        """Through ``client`` (e.g. a ``TestClient``, one thread), or clients of
        ``base_url``'s own."""
        local = threading.local()
        own: list[httpx.Client] = []

        def http() -> httpx.Client:
            if client is not None:
                return client
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=self.base_url, timeout=60)
                own.append(local.client)
            return cast(httpx.Client, local.client)

        workers = 1 if client is not None else max(1, threads)
        pool = ThreadPoolExecutor(workers) if workers > 1 else None

        def each(make: Callable[[int], str], count: int) -> list[str]:
            return list(pool.map(make, range(count)) if pool else map(make, range(count)))

        tag = f"{random.Random(self.seed).getrandbits(32):08x}{uuid.uuid4().hex[:6]}"
        try:
            if promote is not None:
                email = f"a{tag}@bench.example"
                self.register(http(), email, f"a{tag}")
                promote(email)
                self.admin = self.login(http(), email)
            owners = each(lambda n: self.user(http(), f"o{n}{tag}", tokens_each), workers)
            self.tokens = each(lambda n: self.user(http(), f"u{n}{tag}", tokens_each), users)
            start = datetime.now(UTC) + timedelta(days=2)
            room = max(users + 1, 2)
            self.codes = each(
                lambda n: self.challenge(http(), owners[n % workers], n, start, room), challenges
            )
        finally:
            if pool:
                pool.shutdown()
            for c in own:
                c.close()
        return self

    def challenge(
        self, client: httpx.Client, owner: str, n: int, start: datetime, room: int
    ) -> str:
        """Draft and publish challenge ``n`` (a 1-token stake); its invite code."""
        made = ok(
            client.post(
                "/v1/challenges",
                headers=bearer(owner),
                json={
                    "name": f"Bench challenge {n}",
                    "starts_at": start.isoformat(),
                    "ends_at": (start + timedelta(days=3)).isoformat(),
                    "entry_stake": 1,
                    "max_participants": room,
                },
            )
        )
        ok(client.post(f"/v1/challenges/{made['id']}/publish", headers=bearer(owner)))
        return str(made["invite_code"])

    def register(self, client: httpx.Client, email: str, name: str) -> str:
        """A new account; its id."""
        made = ok(
            client.post(
                "/v1/auth/register",
                json={"email": email, "username": name[:20], "password": PASSWORD},
            )
        )
        return str(made["id"])

    def login(self, client: httpx.Client, email: str) -> str:
        """An access token."""
        return str(
            ok(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}))[
                "access_token"
            ]
        )

    def user(self, client: httpx.Client, name: str, tokens: int) -> str:
        """Register, log in and deposit ``tokens``; the access token."""
        email = f"{name}@bench.example"
        user_id = self.register(client, email, name)
        token = self.login(client, email)
        if self.admin:
            ok(
                client.post(
                    "/v1/admin/adjustments",
                    headers=bearer(self.admin),
                    json={
                        "user_id": user_id,
                        "direction": "credit",
                        "tokens": tokens,
                        "reason": "bench deposit",
                    },
                )
            )
            return token
        checkout = ok(
            client.post(
                "/v1/wallet/deposits",
                headers=bearer(token),
                json={
                    "tokens": tokens,
                    "success_url": f"{self.base_url}/paid",
                    "cancel_url": f"{self.base_url}/cancel",
                },
            )
        )
        paid = client.post(f"{checkout['checkout_url']}/pay", follow_redirects=False)
        if paid.status_code >= 400:
            raise RuntimeError(f"paying the checkout failed: {paid.status_code} {paid.text}")
        return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} "
            f"{response.text[:300]}"
        )
    return response.json()
