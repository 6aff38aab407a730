"""Photo proofs in the submission use case (rules §4), on the in-memory event store with the
real Pillow inspector and a local proof store: how flagged photos end when voting closes,
and that events recorded before photos were judged this way still replay."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from adapters.photos import PillowPhotoInspector
from adapters.proof_store import LocalProofStore
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.settings import LedgerSettings
from application.submissions import Submissions
from domain.aggregate import Cause
from domain.challenge import Challenge
from domain.proofs import Proof, photo_type
from domain.verification import ACCEPTED, EXPIRED, PENDING, Verification
from tests.photos import decoded, photo_bytes, variant

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 3, 4, tzinfo=UTC)
MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=UTC)
A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)


@dataclass(frozen=True)
class User:
    id: UUID
    is_admin: bool = False


@dataclass
class Game:
    ledger: Ledger
    clock: AdjustableClock
    service: Submissions
    challenge_id: UUID

    def submit(self, user: UUID, data: bytes) -> Any:
        proof = Proof("photo", data, photo_type(data, None))
        return self.service.submit(self.challenge_id, User(user), proof, me(user))

    def settle(self) -> None:
        self.clock.set(END + self.ledger.settings.settlement_delay)
        self.ledger.settle(self.challenge_id, None, Cause.worker("settlement"))


def me(user: UUID) -> Cause:
    return Cause.user(user, f"req-{user.int}")


def shot(seed: str, at: datetime = MONDAY_9) -> bytes:
    return photo_bytes(seed, taken_at=at, offset="+00:00")


def play(tmp_path: Path, mode: str, settings: LedgerSettings | None = None) -> Game:
    """Three players in a two-day challenge (06:00–22:00 UTC), on Monday 09:00."""
    clock = AdjustableClock(T0, frozen=True)
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock, settings=settings)
    for user in (A, B, C):
        ledger.credit_deposit(user, f"pi_{user.int}", 10_000, Cause.stripe(f"evt_{user.int}"))
    made = ledger.create_challenge(
        A,
        me(A),
        name="Run daily",
        starts_at=START,
        ends_at=END,
        entry_stake=500,
        window_start="06:00",
        window_end="22:00",
        timezone="UTC",
        scope="challenge_tz",
        verification_mode=mode,
        proof_types=["photo", "text"],
    )
    ledger.publish(made.challenge_id, A, me(A))
    for user in (B, C):
        ledger.join(made.invite_code, user, "UTC", me(user))
    clock.set(MONDAY_9)
    store = LocalProofStore(tmp_path / "proofs")
    service = Submissions(ledger, store, lambda _: [made.challenge_id], PillowPhotoInspector(10**7))
    return Game(ledger, clock, service, made.challenge_id)


def test_in_auto_mode_a_flagged_photo_nobody_decided_counts_when_voting_closes(
    tmp_path: Path,
) -> None:
    game = play(tmp_path, "auto")
    original = shot("original")
    game.submit(A, original)
    near = game.submit(B, variant(original, "resized"))
    late = game.submit(C, shot("late", MONDAY_9 - timedelta(hours=4)))
    assert (near.status, late.status) == (PENDING, PENDING)
    assert near.flags == ("near_duplicate", "capture_time_missing")  # resizing lost the EXIF
    assert late.flags == ("capture_time_outside_window",)

    game.settle()

    for made in (near, late):
        assert game.ledger.verification(made.submission_id).status == ACCEPTED
    challenge = game.ledger.challenge(game.challenge_id)
    assert {str(r.submission_id): r.status for r in challenge.submissions.values()} == {
        str(s): ACCEPTED for s in challenge.submissions
    }


def test_an_exact_copy_nobody_decided_does_not_count_even_in_auto_mode(tmp_path: Path) -> None:
    game = play(tmp_path, "auto")
    same = shot("same")
    game.submit(A, same)
    copy = game.submit(B, same)
    assert (copy.status, copy.flags) == (PENDING, ("duplicate",))

    game.settle()

    assert game.ledger.verification(copy.submission_id).status == EXPIRED
    assert game.ledger.challenge(game.challenge_id).submissions[str(copy.submission_id)].status == (
        EXPIRED
    )


def test_in_quorum_mode_a_submission_nobody_decided_expires(tmp_path: Path) -> None:
    game = play(tmp_path, "quorum")
    original = shot("original")
    game.submit(A, original)
    near = game.submit(B, variant(original, "cropped"))

    game.settle()

    assert game.ledger.verification(near.submission_id).status == EXPIRED


def test_the_tolerance_and_the_distance_are_settings(tmp_path: Path) -> None:
    six_minutes_early = datetime(2026, 3, 2, 5, 54, tzinfo=UTC)
    default = play(tmp_path / "default", "auto")
    default.submit(A, shot("mine"))
    assert default.submit(B, shot("theirs")).flags == ()
    assert default.submit(C, shot("early", six_minutes_early)).flags == (
        "capture_time_outside_window",
    )

    lenient = LedgerSettings.model_construct(
        capture_tolerance_minutes=10, near_duplicate_distance=64
    )
    game = play(tmp_path / "lenient", "auto", lenient)
    game.submit(A, shot("mine"))
    assert game.submit(B, shot("theirs")).flags == ("near_duplicate",)  # every photo is near
    assert game.submit(C, shot("early", six_minutes_early)).flags == ("near_duplicate",)


# -- events recorded before photos were judged (v1) still replay ---------------------------

V2_FIELDS = {
    "peerpush:Challenge.SubmissionReceived": ("phash", "flags"),
    "peerpush:Challenge.Settled": ("accepted_at_close",),
    "peerpush:Verification.Submitted": ("flag_reasons", "phash", "stored_sha256", "stored_size"),
    "peerpush:Verification.Closed": ("status",),
}


def as_version_1(stored: StoredEvent) -> StoredEvent:
    """The row as the previous release wrote it: no v2 fields, no class version."""
    if stored.topic not in V2_FIELDS:
        return stored
    state = json.loads(stored.state)
    for name in (*V2_FIELDS[stored.topic], "class_version"):
        state.pop(name, None)
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(state, separators=(",", ":")).encode(),
    )


def test_events_written_before_photos_were_judged_still_replay(tmp_path: Path) -> None:
    game = play(tmp_path, "quorum")
    first = game.submit(A, shot("first"))
    copy = game.submit(B, shot("first"))
    game.settle()
    rows = game.ledger.recorder.select_notifications(start=1, limit=10_000)
    old = [as_version_1(row) for row in rows]
    assert any(row.topic == "peerpush:Verification.Closed" for row in old)

    replayed = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=game.clock)
    replayed.recorder.insert_events(old)

    challenge = replayed.repository.get(game.challenge_id)
    assert isinstance(challenge, Challenge)
    record = challenge.submissions[str(copy.submission_id)]
    assert challenge.flags_of(record) == ("duplicate",)  # recomputed from the SHA-256
    assert record.status == EXPIRED and record.phash == ""
    old_copy = replayed.repository.get(copy.submission_id)
    assert isinstance(old_copy, Verification)
    assert (old_copy.status, old_copy.flags, old_copy.reasons()) == (
        EXPIRED,
        ("duplicate",),
        {"duplicate": "byte-identical to an earlier photo in this challenge"},
    )
    assert old_copy.stored_with_metadata and old_copy.stored_size == old_copy.size
    assert replayed.verification(first.submission_id).status == EXPIRED


def test_a_photo_stored_before_photos_were_stripped_is_served_without_its_exif(
    tmp_path: Path,
) -> None:
    game = play(tmp_path, "quorum")
    made = game.submit(A, shot("mine"))
    rows = game.ledger.recorder.select_notifications(start=1, limit=10_000)
    replayed = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=game.clock)
    replayed.recorder.insert_events([as_version_1(row) for row in rows])
    # The previous release stored the upload itself, position and all.
    key = replayed.verification(made.submission_id).proof_key
    store = LocalProofStore(tmp_path / "old-proofs")
    with_gps = photo_bytes("mine", taken_at=MONDAY_9, offset="+00:00", gps=True)
    store.put(key, with_gps, "image/png")
    service = Submissions(replayed, store, lambda _: [], PillowPhotoInspector(10**7))

    served = service.proof(made.submission_id, User(B))

    assert served.url is None and not decoded(served.data).getexif()
    assert decoded(served.data).tobytes() == decoded(with_gps).tobytes()


@pytest.mark.parametrize("how", ["reencoded", "resized", "cropped"])
def test_the_perceptual_hash_is_kept_where_later_submissions_find_it(
    tmp_path: Path, how: str
) -> None:
    """The challenge keeps each photo's hash, so a later near-copy is found without
    reading the stream, by anyone, in any later slot."""
    game = play(tmp_path, "auto")
    original = shot(f"kept-{how}")
    made = game.submit(A, original)
    recorded = game.ledger.verification(made.submission_id)
    assert len(recorded.phash) == 16
    challenge = game.ledger.challenge(game.challenge_id)
    assert challenge.submissions[str(made.submission_id)].phash == recorded.phash

    game.clock.set(MONDAY_9 + timedelta(days=1))
    again = game.submit(A, variant(original, how))  # the same player, the next day

    assert "near_duplicate" in again.flags
