"""The submission use case (rules §4) on the in-memory event store and a local proof store:
what ends up stored for an accepted proof, and that a refused one leaves nothing behind."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from adapters.photos import PillowPhotoInspector
from adapters.proof_store import LocalProofStore
from application.ledger import Ledger
from application.ports import AdjustableClock
from application.submissions import Submissions
from domain.aggregate import Cause
from domain.errors import (
    DuplicateSubmission,
    NotFound,
    NotParticipant,
    ProofTypeNotAllowed,
    SubmissionRefused,
)
from domain.proofs import Proof
from tests.photos import decoded, photo_bytes

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 3, 5, tzinfo=UTC)
MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=UTC)
A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)
PNG = photo_bytes("service", taken_at=MONDAY_9, offset="+00:00", gps=True)


@dataclass(frozen=True)
class User:
    id: UUID
    is_admin: bool = False


@dataclass
class World:
    ledger: Ledger
    clock: AdjustableClock
    store: LocalProofStore
    root: Path
    service: Submissions
    challenge_id: UUID
    invite_code: str

    def stored(self) -> list[str]:
        """Every object key in the store (not the content types beside them)."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.endswith(".content-type")
        )


def me(user: UUID) -> Cause:
    return Cause.user(user, f"req-{user.int}")


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = AdjustableClock(T0, frozen=True)
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    for user in (A, B):
        ledger.credit_deposit(user, f"pi_{user.int}", 10_000, Cause.stripe(f"evt_{user.int}"))
    terms: dict[str, Any] = {
        "name": "Run daily",
        "starts_at": START,
        "ends_at": END,
        "entry_stake": 500,
        "window_start": "06:00",
        "window_end": "22:00",
        "timezone": "UTC",
        "scope": "challenge_tz",
        "verification_mode": "quorum",
        "proof_types": ["photo", "text"],
    }
    made = ledger.create_challenge(A, me(A), **terms)
    ledger.publish(made.challenge_id, A, me(A))
    ledger.join(made.invite_code, B, "UTC", me(B))
    clock.set(MONDAY_9)
    root = tmp_path / "proofs"
    store = LocalProofStore(root)
    joined = {A: [made.challenge_id], B: [made.challenge_id]}
    service = Submissions(
        ledger, store, lambda user: joined.get(user, []), PillowPhotoInspector(40_000_000)
    )
    return World(ledger, clock, store, root, service, made.challenge_id, made.invite_code)


def test_an_accepted_submission_stores_exactly_one_object_at_its_documented_key(
    world: World,
) -> None:
    made = world.service.submit(
        world.challenge_id, User(B), Proof("photo", PNG, "image/png"), me(B)
    )

    key = f"challenges/{world.challenge_id}/{B}/{made.slot}/{made.submission_id}"
    assert world.stored() == [key]
    kept = world.store.get(key)
    assert decoded(kept).tobytes() == decoded(PNG).tobytes()  # the pixels, losslessly
    assert not decoded(kept).getexif()  # and nothing else: no capture time, no position
    recorded = world.ledger.verification(made.submission_id)
    assert (recorded.proof_key, recorded.mime_type, recorded.size) == (key, "image/png", len(PNG))
    assert recorded.sha256 == hashlib.sha256(PNG).hexdigest()  # the upload's, for audit
    assert (recorded.stored_sha256, recorded.stored_size) == (
        hashlib.sha256(kept).hexdigest(),
        len(kept),
    )


def test_a_text_proof_is_stored_too_so_events_never_carry_its_words(world: World) -> None:
    made = world.service.submit(
        world.challenge_id, User(B), Proof("text", b"ran 5k", "text/plain"), me(B)
    )

    assert world.store.get(world.ledger.verification(made.submission_id).proof_key) == b"ran 5k"
    assert len(world.stored()) == 1


@pytest.mark.parametrize(
    ("who", "proof", "refusal"),
    [
        (C, Proof("text", b"hello", "text/plain"), NotParticipant),
        (B, Proof("video", b"clip", "video/mp4"), ProofTypeNotAllowed),
    ],
)
def test_a_refused_submission_leaves_no_stored_object(
    world: World, who: UUID, proof: Proof, refusal: type[Exception]
) -> None:
    with pytest.raises(refusal):
        world.service.submit(world.challenge_id, User(who), proof, me(who))

    assert world.stored() == []


def test_a_second_proof_for_the_same_slot_is_refused_and_the_first_object_is_kept(
    world: World,
) -> None:
    first = world.service.submit(
        world.challenge_id, User(B), Proof("text", b"one", "text/plain"), me(B)
    )

    with pytest.raises(DuplicateSubmission):
        world.service.submit(
            world.challenge_id, User(B), Proof("text", b"two", "text/plain"), me(B)
        )

    key = world.ledger.verification(first.submission_id).proof_key
    assert world.stored() == [key]
    assert world.store.get(key) == b"one"


def test_a_submission_outside_the_challenge_is_refused_with_nothing_stored(world: World) -> None:
    world.clock.set(END)

    with pytest.raises(SubmissionRefused):
        world.service.submit(
            world.challenge_id, User(B), Proof("text", b"late", "text/plain"), me(B)
        )

    assert world.stored() == []


def test_an_upload_the_ledger_then_refuses_is_deleted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger decides again on fresh state: a refusal there (a racing command changed
    the challenge) removes the object just uploaded, which no event names."""

    def refuse(*_: object) -> None:
        raise SubmissionRefused("the challenge changed meanwhile")

    monkeypatch.setattr(world.ledger, "submit", refuse)
    with pytest.raises(SubmissionRefused):
        world.service.submit(world.challenge_id, User(B), Proof("text", b"x", "text/plain"), me(B))

    assert world.stored() == []


def test_an_invisible_challenge_is_not_found_for_an_upload(world: World) -> None:
    with pytest.raises(NotFound):
        world.service.submit(UUID(int=12345), User(B), Proof("text", b"x", "text/plain"), me(B))

    assert world.stored() == []


def test_the_review_queue_lists_others_pending_submissions_until_one_has_voted(
    world: World,
) -> None:
    made = world.service.submit(
        world.challenge_id, User(B), Proof("text", b"x", "text/plain"), me(B)
    )

    assert [r.submission_id for r in world.service.reviews(A)] == [made.submission_id]
    assert world.service.reviews(B) == []  # not one's own

    world.service.vote(made.submission_id, User(A), True, me(A))

    assert world.service.reviews(A) == []


def test_participants_list_submissions_with_the_duplicate_photo_flag(world: World) -> None:
    world.service.submit(world.challenge_id, User(A), Proof("photo", PNG, "image/png"), me(A))
    world.service.submit(world.challenge_id, User(B), Proof("photo", PNG, "image/png"), me(B))

    items = world.service.submissions(world.challenge_id, User(A))

    assert {(i.user_id, i.proof_type, i.flags) for i in items} == {
        (A, "photo", ()),
        (B, "photo", ("duplicate",)),
    }
    with pytest.raises(NotParticipant):
        world.service.submissions(world.challenge_id, User(C))
