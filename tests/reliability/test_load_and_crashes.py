"""Load, crashes and a database restart, checked like Jepsen checks a history.

The production shape runs on one machine (``cluster.py``): a private PostgreSQL, two API
processes, the projection worker, the withdrawal worker and the local Stripe server. Eight
funded users and four challenges are raced by ``RELIABILITY_CLIENTS`` (64) client threads for
``RELIABILITY_SECONDS``, in three phases moved by the shared test clock: joining (stakes) and
withdrawals; proofs and votes; settlements (owners) and withdrawals. Some withdrawals are sent
twice with one ``Idempotency-Key``, as a client does after a timeout.

Meanwhile a chaos thread SIGKILLs an API process, the projection worker and the withdrawal
worker ``RELIABILITY_KILLS`` times each, at seeded random moments, and restarts them; once, it
stops PostgreSQL itself: ``/v1/ready`` must answer 503 and a command 503 (not 500), and the
service must recover by itself when the database is back.

Every request and its answer is recorded (the history). Afterwards, with the workers given
time to finish, the checker asserts:

- no 500 anywhere; no 503 outside the database's outage or a killed process's requests;
- every 2xx withdrawal is in the stream exactly once with its tokens; the stream holds no
  withdrawal that no client could have caused (beyond requests whose answer was lost);
- every 2xx join, vote and settlement is in the aggregates; a key's retry answered the same
  withdrawal;
- rules §8 (no balance or lot below zero, conservation, pools), over the replayed aggregates;
- every (withdrawal, lot) refunded exactly once at the local Stripe server and recorded with
  that refund, and no refund at Stripe unrecorded;
- ``peerpush audit verify``: read models equal a rebuild from the stream, the hash chain holds.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from adapters.persistence import DatabaseSettings
from adapters.test_clock import PgTestClock
from api.bootstrap import build_ledger
from domain.wallet import Wallet
from tests.api.test_challenges import challenge_body
from tests.fakes.stripe_server import FakeStripe
from tests.invariants import assert_ledger_invariants, challenges, wallets
from tests.reliability.cluster import API_NAMES, Cluster, PrivatePostgres, wait_until
from tests.reliability.conftest import knob
from tests.reliability.recorder import Recorder

AREA_LOAD, AREA_CRASH = "load and concurrency", "crashes"
SECONDS = knob("RELIABILITY_SECONDS")
CLIENTS = knob("RELIABILITY_CLIENTS")
KILLS = knob("RELIABILITY_KILLS")
USERS, CHALLENGES, FUNDS = 8, 4, 5_000
PASSWORD = "correct horse battery"
URLS = {"success_url": "http://127.0.0.1:8000/ok", "cancel_url": "http://127.0.0.1:8000/no"}
AREAS = (AREA_LOAD, AREA_CRASH)


@dataclass
class Call:
    """One request of the history: what was asked, what came back (None: no answer)."""

    op: str
    user: int
    path: str
    body: dict[str, Any]
    key: str | None
    status: int | None
    answer: Any
    started: float
    ended: float
    outage: bool  # sent while the database was (being) stopped


class History:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.outage = threading.Event()
        self.settled_asks: set[str] = set()

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, PrivatePostgres]]:
    # Not under pytest's temporary directory: every pytest session on the machine makes that
    # private to root again, and PostgreSQL runs as its own user.
    home = Path(tempfile.mkdtemp(prefix="peerpush-reliability-"))
    postgres = PrivatePostgres(home / "pg")
    stripe = FakeStripe().start()
    db = DatabaseSettings.from_url(postgres.url, schema="public")
    cluster = Cluster(db, tmp_path, stripe)
    try:
        migrated = cluster.peerpush("migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for name in (*API_NAMES, "projections", "withdrawals"):
            cluster.start(name)
        yield cluster, postgres
    finally:
        cluster.stop_all()
        stripe.stop()
        postgres.close()
        shutil.rmtree(home, ignore_errors=True)


class World:
    """The users, their tokens and the challenges, set up over HTTP."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = httpx.Client(base_url=cluster.url("api1"), timeout=30)
        self.headers: list[dict[str, str]] = []
        self.ids: list[UUID] = []
        for n in range(USERS):
            tag = uuid.uuid4().hex[:8]
            body = {
                "email": f"load{n}_{tag}@example.com",
                "username": f"load{n}_{tag}",
                "password": PASSWORD,
            }
            created = self.http.post("/v1/auth/register", json=body)
            assert created.status_code == 201, created.text
            login = self.http.post(
                "/v1/auth/login", json={"email": body["email"], "password": PASSWORD}
            )
            self.headers.append({"Authorization": f"Bearer {login.json()['access_token']}"})
            self.ids.append(UUID(created.json()["id"]))
            self.fund(n)
        now = datetime.fromisoformat(
            self.http.get("/v1/test-clock", headers=self.headers[0]).json()["now"]
        )
        self.starts = (now + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        self.challenges: list[dict[str, Any]] = []
        for n in range(CHALLENGES):
            rules = {
                "verification": {"mode": "quorum", "quorum_pct": 50},
                "grace": 1,
                "proof_types": ["text"],
                "penalty_tokens": 5,
                "frequency": "daily",
                "time_window": {
                    "start": "00:00",
                    "end": "00:00",
                    "timezone": "UTC",
                    "scope": "challenge_tz",
                },
            }
            body = challenge_body(self.starts, rules=rules, max_participants=USERS, entry_stake=100)
            owner = n % USERS
            drafted = self.http.post("/v1/challenges", json=body, headers=self.headers[owner])
            assert drafted.status_code == 201, drafted.text
            cid = drafted.json()["id"]
            published = self.http.post(f"/v1/challenges/{cid}/publish", headers=self.headers[owner])
            assert published.is_success, published.text
            self.challenges.append(
                {"id": cid, "owner": owner, "code": drafted.json()["invite_code"]}
            )

    def fund(self, n: int) -> None:
        """A real deposit: a checkout at Stripe, paid, its webhooks delivered (signed)."""
        opened = self.http.post(
            "/v1/wallet/deposits", json={"tokens": FUNDS, **URLS}, headers=self.headers[n]
        )
        assert opened.status_code == 201, opened.text
        for event in self.cluster.stripe.pay(opened.json()["session_id"]):
            body, headers = self.cluster.stripe.webhook(event)
            delivered = self.http.post("/v1/stripe/webhook", content=body, headers=headers)
            assert delivered.status_code == 200, delivered.text

    def steady(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that must succeed: tried on either API until one answers (a process may
        be restarting, the database may be coming back)."""
        deadline = time.monotonic() + 120
        while True:
            for name in API_NAMES:
                try:
                    r = httpx.request(method, self.cluster.url(name) + path, timeout=30, **kwargs)
                except httpx.HTTPError:
                    continue
                if r.status_code < 500:
                    return r
            assert time.monotonic() < deadline, f"no API answered {method} {path}"
            time.sleep(0.2)

    def advance_to(self, at: datetime) -> None:
        now = datetime.fromisoformat(
            self.steady("GET", "/v1/test-clock", headers=self.headers[0]).json()["now"]
        )
        if at > now:
            seconds = {"seconds": int((at - now).total_seconds()) + 1}
            moved = self.steady(
                "POST", "/v1/test-clock/advance", json=seconds, headers=self.headers[0]
            )
            assert moved.is_success, moved.text


class Client(threading.Thread):
    """One of the concurrent clients: random operations on the small world, all recorded."""

    def __init__(
        self, n: int, world: World, history: History, stop: threading.Event, phase: list[str]
    ) -> None:
        super().__init__(daemon=True, name=f"client-{n}")
        self.rng = random.Random(n)
        self.world, self.history, self.stop, self.phase = world, history, stop, phase
        self.http = httpx.Client(timeout=20)

    def call(
        self,
        op: str,
        user: int,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        form: dict[str, str] | None = None,
    ) -> Call:
        api = self.world.cluster.url(self.rng.choice(API_NAMES))
        headers = dict(self.world.headers[user])
        if key:
            headers["Idempotency-Key"] = key
        outage = self.history.outage.is_set()
        started = time.monotonic()
        try:
            if form is not None:
                parts = {k: (None, v) for k, v in form.items()}
                r = self.http.request(method, api + path, files=parts, headers=headers)
            else:
                r = self.http.request(method, api + path, json=body, headers=headers)
            status = r.status_code
            answer = r.json() if r.content and "json" in r.headers.get("content-type", "") else {}
        except httpx.HTTPError:
            status, answer = None, {}
        call = Call(
            op,
            user,
            path,
            body or {},
            key,
            status,
            answer,
            started,
            time.monotonic(),
            outage or self.history.outage.is_set(),
        )
        self.history.add(call)
        return call

    def run(self) -> None:
        while not self.stop.is_set():
            user = self.rng.randrange(USERS)
            challenge = self.rng.choice(self.world.challenges)
            phase = self.phase[0]
            roll = self.rng.random()
            if roll < 0.3:
                key = f"w-{uuid.uuid4().hex}" if self.rng.random() < 0.5 else None
                body = {"tokens": self.rng.choice([1, 7, 40, 150])}
                first = self.call("withdraw", user, "POST", "/v1/wallet/withdrawals", body, key)
                if (key and self.rng.random() < 0.5) or (key and first.status is None):
                    self.call("withdraw", user, "POST", "/v1/wallet/withdrawals", body, key)
            elif phase == "join":
                join = {"invite_code": challenge["code"], "timezone": "UTC"}
                self.call("join", user, "POST", "/v1/challenges/join", join)
            elif phase == "prove" and roll < 0.55:
                proof = {"proof_type": "text", "text": f"walked {self.rng.randint(1, 20)} km"}
                self.call(
                    "submit",
                    user,
                    "POST",
                    f"/v1/challenges/{challenge['id']}/submissions",
                    {"challenge_id": challenge["id"]},
                    form=proof,
                )
            elif phase == "prove":
                self.vote(user)
            elif phase == "settle":
                owner = challenge["owner"]
                self.call("settle", owner, "POST", f"/v1/challenges/{challenge['id']}/settle")
                self.history.settled_asks.add(challenge["id"])
            else:
                self.call("wallet", user, "GET", "/v1/wallet")

    def vote(self, user: int) -> None:
        reviews = self.call("reviews", user, "GET", "/v1/reviews")
        items = reviews.answer if reviews.status == 200 else []
        if isinstance(items, list) and items:
            pick = self.rng.choice(items)
            body = {"approve": self.rng.random() < 0.7}
            self.call("vote", user, "POST", f"/v1/submissions/{pick['submission_id']}/votes", body)


class Chaos(threading.Thread):
    """Kills and restarts processes at seeded random moments; stops PostgreSQL once."""

    def __init__(
        self,
        cluster: Cluster,
        postgres: PrivatePostgres,
        history: History,
        seconds: float,
        world: World,
    ) -> None:
        super().__init__(daemon=True, name="chaos")
        self.cluster, self.postgres, self.history = cluster, postgres, history
        self.seconds, self.world = seconds, world
        self.rng = random.Random(2026)
        self.kills: Counter[str] = Counter()
        self.outage: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test, not lost in a thread
            self.error = e

    def _run(self) -> None:
        victims = [self.rng.choice(API_NAMES) for _ in range(KILLS)]
        victims += ["projections"] * KILLS + ["withdrawals"] * KILLS
        self.rng.shuffle(victims)
        plan = sorted(self.rng.uniform(0.05, 0.9) * self.seconds for _ in victims)
        outage_at = self.seconds * 0.5
        began = time.monotonic()
        events: list[tuple[float, str]] = [
            *zip(plan, victims, strict=True),
            (outage_at, "postgres"),
        ]
        for at, victim in sorted(events):
            time.sleep(max(0.0, began + at - time.monotonic()))
            if victim == "postgres":
                self.database_outage()
            else:
                self.cluster.kill(victim)
                self.kills[victim] += 1
                self.cluster.start(victim)

    def database_outage(self) -> None:
        api = self.cluster.url("api2")
        headers = self.world.headers[0]
        self.history.outage.set()
        self.postgres.stop()
        with httpx.Client(timeout=90) as http:
            ready = http.get(api + "/v1/ready")
            command = http.post(api + "/v1/wallet/withdrawals", json={"tokens": 1}, headers=headers)
            self.outage = {
                "ready": ready.status_code,
                "command": command.status_code,
                "command_body": command.text[:300],
                "retry_after": command.headers.get("Retry-After"),
            }
            self.postgres.start()
            began = time.monotonic()
            for name in API_NAMES:  # every process recovers by itself, none restarted
                probe = self.cluster.url(name) + "/v1/ready"
                wait_until(
                    lambda url=probe: http.get(url).status_code == 200,  # type: ignore[misc]
                    60,
                    f"{name} to be ready again",
                )
            self.outage["recovered_seconds"] = time.monotonic() - began
        self.history.outage.clear()  # a request begun before this is marked by its start


@pytest.mark.long
@pytest.mark.timeout(3 * SECONDS + 1800)  # three phases, then bounded starts and waits
def test_no_acknowledged_command_is_lost_under_load_kills_and_a_database_restart(
    cluster: tuple[Cluster, PrivatePostgres], reliability: Recorder
) -> None:
    the_cluster, postgres = cluster
    world = World(the_cluster)
    history, stop, phase = History(), threading.Event(), ["join"]
    clients = [Client(n, world, history, stop, phase) for n in range(CLIENTS)]
    chaos = Chaos(the_cluster, postgres, history, 3 * SECONDS, world)
    began = time.monotonic()
    for client in clients:
        client.start()
    chaos.start()
    try:
        time.sleep(SECONDS)  # the length of a phase is the test's knob, not a guess about speed
        world.advance_to(world.starts + timedelta(hours=1))
        phase[0] = "prove"
        time.sleep(SECONDS)
        world.advance_to(world.starts + timedelta(days=3, hours=1))
        phase[0] = "settle"
        time.sleep(SECONDS)
        chaos.join(timeout=600)
        stop.set()
        for client in clients:
            client.join(timeout=120)
    finally:
        stop.set()
        chaos.join(timeout=600)
        assert chaos.error is None, f"chaos: {chaos.error!r}"
    ran = time.monotonic() - began
    assert chaos.error is None, chaos.error

    # The outage: not ready, commands refused with 503, recovered by itself.
    assert chaos.outage["ready"] == 503, chaos.outage
    assert chaos.outage["command"] == 503, chaos.outage

    ledger = build_ledger(the_cluster.db, clock=PgTestClock(the_cluster.db))
    try:
        settle_down(the_cluster, ledger)
        findings = check(history, ledger, the_cluster, world.ids)
    finally:
        ledger.close()
    verified = the_cluster.peerpush("audit", "verify")
    the_cluster.stop_all()

    calls = history.calls
    reliability.add(AREA_LOAD, requests=len(calls), seconds=ran, checks=len(findings["checked"]))
    reliability.add(
        AREA_CRASH, kills=sum(chaos.kills.values()), restarts=1 + sum(chaos.kills.values())
    )
    for finding in findings["problems"]:
        reliability.finding(AREA_LOAD, finding)
    assert not findings["problems"], "\n".join(findings["problems"][:30])
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]


def settle_down(cluster: Cluster, ledger: Any) -> None:
    """Give the workers time to resolve every withdrawal and the read models to catch up."""

    def resolved() -> bool:
        return all(not w.withdrawal_pending for w in wallets(ledger))

    wait_until(resolved, 120, "every withdrawal to be resolved by the worker")
    with httpx.Client(timeout=10) as http:

        def caught_up() -> bool:
            r = http.get(cluster.url("api1") + "/v1/ready")
            return r.status_code == 200 and r.json()["lag"] == 0

        wait_until(caught_up, 120, "the read models to catch up")


def check(history: History, ledger: Any, cluster: Cluster, ids: list[UUID]) -> dict[str, list[str]]:
    problems: list[str] = []
    checked: list[str] = []
    calls = history.calls
    for call in calls:
        if call.status == 500:
            problems.append(f"500 on {call.op}: {call.answer}")
        if call.status == 503 and not call.outage and call.op not in ("wallet", "reviews"):
            problems.append(f"503 outside the outage on {call.op}: {call.answer}")
    checked.append("statuses")

    # Withdrawals: every 2xx in the stream once, with its tokens; nothing unexplained.
    requested: Counter[UUID] = Counter()
    tokens_of: dict[UUID, int] = {}
    for n in ledger._notifications((Wallet.WithdrawalRequested.TOPIC,)):
        event = ledger.mapper.to_domain_event(n)
        requested[event.withdrawal_id] += 1
        tokens_of[event.withdrawal_id] = event.tokens
    problems += [f"withdrawal {w} requested {c} times" for w, c in requested.items() if c > 1]
    acknowledged: dict[UUID, int] = {}
    by_key: dict[str, set[UUID]] = {}
    for call in calls:
        if call.op == "withdraw" and call.status == 202:
            wid = UUID(call.answer["withdrawal_id"])
            acknowledged[wid] = call.body["tokens"]
            if call.key:
                by_key.setdefault(call.key, set()).add(wid)
    for wid, tokens in acknowledged.items():
        if requested[wid] != 1 or tokens_of.get(wid) != tokens:
            problems.append(
                f"acknowledged withdrawal {wid} of {tokens} is in the stream "
                f"{requested[wid]} times with {tokens_of.get(wid)}"
            )
    problems += [
        f"key {k} answered {len(ids)} withdrawals" for k, ids in by_key.items() if len(ids) > 1
    ]
    unanswered = sum(
        1 for c in calls if c.op == "withdraw" and (c.status is None or c.status >= 500)
    )
    unexplained = set(requested) - set(acknowledged)
    if len(unexplained) > unanswered:
        problems.append(
            f"{len(unexplained)} withdrawals in the stream that no 2xx answered, "
            f"but only {unanswered} requests went unanswered"
        )
    checked.append("withdrawals")

    # Joins, votes and settlements acknowledged are in the aggregates.
    by_id = {str(c.id): c for c in challenges(ledger)}
    for call in calls:
        if call.status not in (200, 201, 202):
            continue
        user = ids[call.user]
        if call.op == "join":
            challenge = by_id[call.answer["challenge_id"]]
            if str(user) not in challenge.participants:
                problems.append(f"acknowledged join of {user} missing from {challenge.id}")
        elif call.op == "vote":
            submission = UUID(call.path.rsplit("/", 2)[-2])
            if ledger.verification(submission).vote_of(user) is None:
                problems.append(f"acknowledged vote of {user} on {submission} missing")
        elif call.op == "settle":
            challenge = by_id[call.answer["id"]]
            if challenge.status not in ("settled", "cancelled"):
                problems.append(f"acknowledged settlement of {challenge.id} is {challenge.status}")
    checked.append("joins, votes, settlements")

    # rules §8 over the replayed aggregates.
    try:
        assert_ledger_invariants(ledger)
    except AssertionError as e:
        problems.append(f"invariants: {e}")
    checked.append("invariants")

    # Stripe: each (withdrawal, lot) refunded once and recorded with that refund.
    stripe = cluster.stripe
    recorded: set[str] = set()
    for wallet in wallets(ledger):
        for hold in wallet.withdrawals.values():
            for lot in hold.lots:
                ours = {"withdrawal_id": str(hold.withdrawal_id), "lot_id": lot}
                made = stripe.refunds_for(ours)
                outcome = str(hold.outcome(lot))
                if len(made) > 1:
                    problems.append(f"lot {lot} of {hold.withdrawal_id} refunded {len(made)} times")
                if outcome == "refunded":
                    if not made or hold.refund_ids[lot] != made[0]["id"]:
                        problems.append(
                            f"{hold.withdrawal_id}:{lot} recorded refunded as "
                            f"{hold.refund_ids.get(lot)}, Stripe has {made}"
                        )
                    recorded.add(hold.refund_ids[lot])
                elif outcome == "pending":
                    problems.append(f"{hold.withdrawal_id}:{lot} never resolved")
    unrecorded = set(stripe.refunds) - recorded
    problems += [f"refund {r} at Stripe is not in the ledger" for r in sorted(unrecorded)]
    checked.append("stripe")
    return {"problems": problems, "checked": checked}
