"""How fast do the read models catch up with the stream? (issue 3: ≥ 10,000 events/s and
≥ 25 % of the raw read-and-decode rate)

Builds, on PostgreSQL (``DATABASE_URL`` or the embedded server) in a fresh schema migrated with
``adapters.migrations.upgrade`` and dropped at the end, a realistic stream of 200,000 events
(``BENCH_EVENTS`` shrinks it): thousands of users depositing, drafting, publishing and joining
challenges, submitting proofs, voting (rejections charge penalties), settling (fees, payouts,
forfeits), cancelling, withdrawing with refunds (some refused, some failing later), admin
adjustments and card disputes (frozen, won, lost). Aggregates are built in memory with the
domain methods, in simulated time, and saved with ``ledger.save(...)`` once per simulated day,
so generation takes seconds and positions follow business time day by day.

Then, in the same run, it measures (a) the raw rate: every notification read in pages with
``recorder.select_notifications`` and decoded with ``mapper.to_domain_event``; (b) catch-up:
``Projector(...).catch_up()`` from an empty read store (every projection). Printed, not
asserted. ``BENCH_PROFILE=1`` runs the catch-up under cProfile and prints the top functions.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.migrations import upgrade
from adapters.persistence import DatabaseSettings, drop_schema, ensure_schema
from api.bootstrap import database_settings, ledger_env
from application.ledger import INVITE_ALPHABET, Ledger
from domain.aggregate import Cause, LedgerAggregate
from domain.challenge import Challenge
from domain.invite import InviteCode
from domain.rules import make_terms
from domain.verification import ACCEPTED, REJECTED, ProofFacts, Verification
from domain.wallet import Wallet
from projections.runner import Projector

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
SEED = 20261125
PAGE = 5_000  # the projector's batch size: both measurements read the same pages
TARGET_RATE = 10_000  # events/s
TARGET_RATIO = 0.25  # of the raw read-and-decode rate
FEE_BPS = 500  # a 5 % platform fee, so revenue has fees as well as forfeits
WEEKS = 26  # the simulated history: half a year, one batch of challenges a week
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney")


class World:
    """Users, their wallets and the week's challenges, kept in memory between saves."""

    def __init__(self, ledger: Ledger, events: int) -> None:
        self.ledger = ledger
        self.rng = random.Random(SEED)
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
            terms = dict(
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
            made = challenge.receive_submission(
                user,
                proof.proof_type,
                proof.sha256 if proof.proof_type == "photo" else "",
                cause,
                at,
            )
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
        assert outcome is not None
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


def generate(ledger: Ledger, events: int) -> World:
    world = World(ledger, events)
    week = START
    while world.saved < events:
        world.week(week)
        week += timedelta(days=7)
    return world


def read_and_decode(ledger: Ledger) -> int:
    """(a) Every notification, read in pages and decoded: the ceiling for any projector."""
    recorder, to_event = ledger.recorder, ledger.mapper.to_domain_event
    start, count = 0, 0
    while batch := recorder.select_notifications(start, PAGE, inclusive_of_start=False):
        for notification in batch:
            to_event(notification)
        count += len(batch)
        start = batch[-1].id
    return count


def catch_up(db: DatabaseSettings, ledger: Ledger) -> tuple[int, int, Any]:
    """(b) All projections from an empty read store to the head."""
    projector = Projector(db, ledger, batch_size=PAGE)
    profiler = cProfile.Profile() if PROFILE else None
    try:
        if profiler:
            profiler.enable()
        applied = projector.catch_up()
        if profiler:
            profiler.disable()
        return applied, len(projector.projections), profiler
    finally:
        projector.close()


def check(db: DatabaseSettings, world: World) -> str:
    """A sanity line: the journal balances and the balances match the aggregates."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT position FROM journal_postings "
            "GROUP BY position HAVING sum(amount) <> 0) AS e"
        ).fetchone()
        available = conn.execute("SELECT sum(available) FROM wallet_balances").fetchone()
    expected = sum(w.available for w in world.wallets.values())
    same = available is not None and available[0] == expected
    return (
        f"check: {unbalanced[0] if unbalanced else '?'} journal entries not summing to 0; "
        f"Σ available {'=' if same else '≠'} the aggregates' ({expected:,} tokens)"
    )


def main() -> None:
    base = database_settings()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_schema(base.url, schema)
    db = DatabaseSettings.from_url(base.url, schema=schema)
    try:
        upgrade(db)
        ledger = Ledger(ledger_env(db))
        t0 = time.perf_counter()
        world = generate(ledger, EVENTS)
        generated = time.perf_counter() - t0
        print(
            f"generated {world.saved:,} events ({len(world.wallets):,} wallets, "
            f"{world.saves} saves) in {generated:.1f}s"
        )

        t0 = time.perf_counter()
        read = read_and_decode(ledger)
        raw = read / (time.perf_counter() - t0)
        print(
            f"(a) read + decode     : {raw:>9,.0f} events/s  ({read:,} events, pages of {PAGE:,})"
        )

        t0 = time.perf_counter()
        applied, projections, profiler = catch_up(db, ledger)
        rate = applied / (time.perf_counter() - t0)
        ratio = rate / raw
        print(
            f"(b) projector catch-up: {rate:>9,.0f} events/s  "
            f"({applied:,} events, {projections} projections)"
        )
        print(f"(b)/(a)               : {ratio:>9.0%}")
        print(check(db, world))
        met = rate >= TARGET_RATE and ratio >= TARGET_RATIO
        print(
            f"target ≥ {TARGET_RATE:,} events/s and ≥ {TARGET_RATIO:.0%} of raw: "
            f"{'met' if met else 'MISSED'}"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        elif not met:
            print(
                "hint: BENCH_PROFILE=1 BENCH_EVENTS=50000 python bench/projection_catchup.py "
                "prints where catch-up spends its time (per-row upserts, isinstance chains, "
                "fetches per batch)"
            )
        ledger.close()
    finally:
        drop_schema(base.url, schema)


if __name__ == "__main__":
    main()
