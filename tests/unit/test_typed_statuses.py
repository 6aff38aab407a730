"""Statuses and choices are ``StrEnum``s, and the stored events did not change (rules §8).

A ``StrEnum`` is written to an event exactly as the plain string it replaced, so events stored
before the change are the same bytes as events stored after it: they load, replay to typed
state, and compare equal to the enums. Snapshots, which hold the records as plain dicts, load
to typed records too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from application.ledger import Ledger
from application.ports import AdjustableClock
from application.transcodings import DataclassTranscoding
from domain.aggregate import Cause
from domain.cashouts import CashoutHold
from domain.challenge import Challenge, SubmissionRecord
from domain.rules import ChallengeTerms
from domain.values import (
    CashoutStatus,
    ChallengeResult,
    ChallengeStatus,
    Frequency,
    ProofType,
    Scope,
    SubmissionStatus,
    VerificationMode,
    Visibility,
    Vote,
)
from domain.verification import ProofFacts, Verification

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, tzinfo=UTC)
A, B = UUID(int=1), UUID(int=2)


def played() -> tuple[Ledger, UUID, UUID]:
    """A quorum challenge between A and B, B's proof approved by A, settled."""
    clock = AdjustableClock(T0, frozen=True)
    app = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    for user in (A, B):
        app.credit_deposit(user, f"pi_{user.int}", 1_000, Cause.stripe(f"evt_{user.int}"))
    made = app.create_challenge(
        A,
        Cause.user(A),
        name="Typed",
        starts_at=START,
        ends_at=START + timedelta(days=1),
        entry_stake=100,
        verification_mode="quorum",
        proof_types=["text"],
    )
    app.publish(made.challenge_id, A, Cause.user(A))
    app.join(made.invite_code, B, "UTC", Cause.user(B))
    clock.set(START + timedelta(hours=1))
    proof = ProofFacts("text", "k", "text/plain", 1, "")
    submitted = app.submit(made.challenge_id, B, proof, Cause.user(B))
    app.vote(submitted.submission_id, A, True, Cause.user(A))
    clock.set(START + timedelta(days=3))
    app.settle(made.challenge_id, A, Cause.user(A))
    return app, made.challenge_id, submitted.submission_id


def stored_events(app: Ledger) -> list[StoredEvent]:
    return list(app.recorder.select_notifications(1, 1000))


def as_before(stored: StoredEvent) -> StoredEvent:
    """The event as the code before the enums wrote it: its payload re-encoded from plain
    JSON values (strings where enums now are)."""
    payload = json.loads(stored.state)
    state = json.dumps(payload, separators=(",", ":")).encode()
    return StoredEvent(stored.originator_id, stored.originator_version, stored.topic, state)


def test_an_enum_is_stored_as_the_plain_string_it_replaced() -> None:
    app, _, submission_id = played()
    verdicts = [
        json.loads(s.state)
        for s in stored_events(app)
        if s.originator_id == submission_id and s.topic.endswith("Decided")
    ]
    assert [v["status"] for v in verdicts] == ["accepted"]
    submitted = next(s for s in stored_events(app) if s.originator_id == submission_id)
    assert json.loads(submitted.state)["status"] == "pending"
    assert all(b"SubmissionStatus" not in s.state for s in stored_events(app))


def test_old_events_load_replay_to_typed_state_and_compare_equal() -> None:
    app, challenge_id, submission_id = played()
    mapper = app.mapper
    events: dict[UUID, list[Any]] = {}
    for stored in stored_events(app):
        old = as_before(stored)
        event = mapper.to_domain_event(old)
        assert mapper.to_stored_event(event).state == old.state  # the payload is unchanged
        events.setdefault(event.originator_id, []).append(event)

    challenge: Any = None
    for event in events[challenge_id]:
        challenge = event.mutate(challenge)
    verification: Any = None
    for event in events[submission_id]:
        verification = event.mutate(verification)

    assert challenge.status is ChallengeStatus.SETTLED and challenge.status == "settled"
    assert challenge.outcome is ChallengeResult.PAID_OUT
    assert challenge.terms.visibility is Visibility.PUBLIC
    assert challenge.terms.frequency is Frequency.DAILY
    assert challenge.terms.scope is Scope.PARTICIPANT_LOCAL
    assert challenge.terms.verification_mode is VerificationMode.QUORUM
    assert challenge.terms.proof_types == (ProofType.TEXT,)
    record = challenge.submissions[str(submission_id)]
    assert record.status is SubmissionStatus.ACCEPTED and record.status == "accepted"
    assert isinstance(verification, Verification)
    assert verification.status is SubmissionStatus.ACCEPTED
    assert verification.proof_type is ProofType.TEXT
    assert verification.vote_of(A) is Vote.APPROVE and verification.vote_of(A) == "approve"
    assert challenge.terms == app.challenge(challenge_id).terms


def test_snapshot_records_written_as_plain_strings_load_typed() -> None:
    record = DataclassTranscoding(SubmissionRecord, "peerpush_submission_record").decode(
        {"submission_id": UUID(int=3), "user_id": A, "slot": "2026-03-02", "status": "expired"}
    )
    assert record.status is SubmissionStatus.EXPIRED
    hold = DataclassTranscoding(CashoutHold, "peerpush_cashout_hold").decode(
        {
            "cashout_id": UUID(int=4),
            "tokens": 1_000,
            "lots": [[str(UUID(int=5)), 1_000]],
            "token_price": 1,
            "requested_at": T0,
            "status": "settled",
        }
    )
    assert hold.status is CashoutStatus.SETTLED
    app, challenge_id, _ = played()
    fields = json.loads(json.dumps(app.challenge(challenge_id).terms.as_fields(), default=str))
    fields.update(starts_at=START, ends_at=START + timedelta(days=1))
    terms = ChallengeTerms(**fields)
    assert terms.visibility is Visibility.PUBLIC and terms.proof_types == (ProofType.TEXT,)
    assert terms == app.challenge(challenge_id).terms


def test_the_challenge_view_of_a_reader_hides_the_allow_list_from_others() -> None:
    app, challenge_id, _ = played()
    challenge: Challenge = app.challenge(challenge_id)
    assert challenge.allow_list_shown_to(A, is_admin=False)  # the owner
    assert challenge.allow_list_shown_to(B, is_admin=True)  # an admin
    assert not challenge.allow_list_shown_to(B, is_admin=False)
