"""The challenge: who staked, what they submitted, and how the pool ends (rules §3–5).

The challenge holds the pool; the tokens themselves are accounted in the wallets. A command
that moves money saves the challenge together with the wallets it touches, so the two never
disagree (the application makes that one save).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain import ids
from domain.aggregate import Cause, LedgerAggregate, LedgerCreated, LedgerEvent
from domain.errors import (
    ChallengeFull,
    ChallengeNotEditable,
    ChallengeNotJoinable,
    DuplicateSubmission,
    Forbidden,
    InvalidField,
    NotAllowListed,
    NotCancellable,
    NotParticipant,
    NotSettleable,
    ProofTypeNotAllowed,
    SubmissionRefused,
    VoteRefused,
)
from domain.photos import (
    Flag,
    PhotoEvidence,
    PhotoRules,
    accepted_when_voting_closes,
    forces_review,
    judge,
    ordered,
)
from domain.rules import ChallengeTerms, check_invite_code
from domain.schedule import (
    expected_slots,
    governing_timezone,
    slot_of,
    slot_windows,
    validate_timezone,
)
from domain.settlement import Split, finishes, split_pool
from domain.values import (
    ChallengeResult,
    ChallengeStatus,
    ProofType,
    SubmissionFlag,
    SubmissionStatus,
    VerificationMode,
    Visibility,
)

DRAFT, ACTIVE, SETTLED, CANCELLED = tuple(ChallengeStatus)


@dataclass(slots=True)
class Participant:
    user_id: UUID
    timezone: str
    stake: int
    penalties: int = 0


@dataclass(slots=True)
class SubmissionRecord:
    submission_id: UUID
    user_id: UUID
    slot: str
    status: SubmissionStatus
    sha256: str = ""
    phash: str = ""
    flags: tuple[SubmissionFlag, ...] = ()

    def __post_init__(self) -> None:
        self.status = SubmissionStatus(self.status)  # a snapshot holds the plain string

    @property
    def proof_type(self) -> ProofType:
        """Only photo proofs are fingerprinted in the challenge (for the duplicate flag)."""
        return ProofType.PHOTO if self.sha256 else ProofType.TEXT


@dataclass(frozen=True)
class NewSubmission:
    """What the challenge decided about a submission it accepted for the record."""

    submission_id: UUID
    slot: str
    status: SubmissionStatus
    flags: tuple[SubmissionFlag, ...]
    eligible: int
    reasons: tuple[str, ...] = ()
    """Why each flag was raised, in the order of ``flags``."""


@dataclass(frozen=True)
class ParticipantResult:
    user_id: UUID
    expected: int
    accepted: int
    finished: bool
    stake: int
    share: int


@dataclass(frozen=True)
class Outcome:
    split: Split
    results: tuple[ParticipantResult, ...]
    pending_submissions: tuple[UUID, ...]
    accepted_at_close: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class Cancellation:
    """A settle that cancelled instead: these participants' stakes and penalties go back."""

    participants: tuple[Participant, ...]


class Challenge(LedgerAggregate):
    TOPIC = "peerpush:Challenge"

    class Drafted(LedgerCreated):
        TOPIC = "peerpush:Challenge.Drafted"
        owner_id: UUID
        invite_code: str
        terms: dict[str, Any]

    class Edited(LedgerEvent):
        TOPIC = "peerpush:Challenge.Edited"
        terms: dict[str, Any]

        def apply(self, challenge: Challenge) -> None:
            challenge.terms = ChallengeTerms(**_terms_from_event(self.terms))

    class Published(LedgerEvent):
        TOPIC = "peerpush:Challenge.Published"

        def apply(self, challenge: Challenge) -> None:
            challenge.status = ACTIVE

    class Joined(LedgerEvent):
        TOPIC = "peerpush:Challenge.Joined"
        user_id: UUID
        timezone: str
        stake: int

        def apply(self, challenge: Challenge) -> None:
            challenge.participants[str(self.user_id)] = Participant(
                self.user_id, self.timezone, self.stake
            )
            challenge.pool += self.stake

    class SubmissionReceived(LedgerEvent):
        """A submission took its slot. A photo's ``sha256`` and perceptual hash ``phash``
        are kept so later photos can be compared with it; ``flags`` are the doubts raised
        when it arrived (v1 events had neither: their only flag, ``duplicate``, is
        recomputed from the hashes)."""

        TOPIC = "peerpush:Challenge.SubmissionReceived"
        class_version = 2
        submission_id: UUID
        user_id: UUID
        slot: str
        status: SubmissionStatus
        sha256: str
        phash: str
        flags: tuple[SubmissionFlag, ...]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(phash="", flags=())

        def apply(self, challenge: Challenge) -> None:
            challenge.submissions[str(self.submission_id)] = SubmissionRecord(
                self.submission_id,
                self.user_id,
                self.slot,
                SubmissionStatus(self.status),
                self.sha256,
                self.phash,
                tuple(SubmissionFlag(f) for f in self.flags),
            )
            if self.sha256:
                challenge.photo_hashes.setdefault(self.sha256, str(self.submission_id))

    class SubmissionDecided(LedgerEvent):
        """A peer-reviewed submission's verdict; a rejection's penalty joins the pool."""

        TOPIC = "peerpush:Challenge.SubmissionDecided"
        submission_id: UUID
        user_id: UUID
        status: SubmissionStatus
        penalty: int

        def apply(self, challenge: Challenge) -> None:
            record = challenge.submissions[str(self.submission_id)]
            record.status = SubmissionStatus(self.status)
            challenge.participants[str(record.user_id)].penalties += self.penalty
            challenge.pool += self.penalty

    class Cancelled(LedgerEvent):
        """Every stake and penalty went back to the lots it came from."""

        TOPIC = "peerpush:Challenge.Cancelled"
        reason: str
        stakes_returned: int
        penalties_returned: int

        def apply(self, challenge: Challenge) -> None:
            challenge.status = CANCELLED
            challenge.pool = 0
            challenge.returned = self.stakes_returned + self.penalties_returned

    class Settled(LedgerEvent):
        """The pool was divided.

        ``results`` holds one ``(user_id, expected, accepted, finished, stake, share)`` per
        participant; the penalties in the pool are ``pool − Σ stake``. Of the submissions
        still pending, ``accepted_at_close`` counted as accepted (flagged photos of an
        ``auto`` challenge that were no exact copy) and ``closed_submissions`` expired.
        """

        TOPIC = "peerpush:Challenge.Settled"
        class_version = 2
        pool: int
        fee: int
        forfeited: int
        returned: int
        paid_out: int
        results: tuple[tuple[UUID, int, int, bool, int, int], ...]
        closed_submissions: tuple[UUID, ...]
        accepted_at_close: tuple[UUID, ...]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(accepted_at_close=())

        def apply(self, challenge: Challenge) -> None:
            challenge.status = SETTLED
            challenge.pool = 0
            challenge.fee = self.fee
            challenge.forfeited = self.forfeited
            challenge.returned = self.returned
            challenge.paid_out = self.paid_out
            for submission_id in self.closed_submissions:
                challenge.submissions[str(submission_id)].status = SubmissionStatus.EXPIRED
            for submission_id in self.accepted_at_close:
                challenge.submissions[str(submission_id)].status = SubmissionStatus.ACCEPTED
            challenge.finishers = [str(r[0]) for r in self.results if r[3]]

    def __init__(self, owner_id: UUID, invite_code: str, terms: dict[str, Any]) -> None:
        self.owner_id = owner_id
        self.invite_code = invite_code
        self.terms = ChallengeTerms(**_terms_from_event(terms))
        self.status: ChallengeStatus = DRAFT
        self.participants: dict[str, Participant] = {}
        self.submissions: dict[str, SubmissionRecord] = {}
        self.photo_hashes: dict[str, str] = {}
        self.pool = 0
        self.finishers: list[str] = []
        self.fee = 0
        self.forfeited = 0
        self.returned = 0
        self.paid_out = 0

    @classmethod
    def draft(
        cls,
        challenge_id: UUID,
        owner_id: UUID,
        invite_code: str,
        terms: ChallengeTerms,
        cause: Cause,
        at: datetime,
    ) -> Challenge:
        _check_private_list(terms)
        return cls._create(
            cls.Drafted,
            id=challenge_id,
            owner_id=owner_id,
            invite_code=check_invite_code(invite_code),
            terms=terms.as_fields(),
            actor=cause.actor,
            request_id=cause.request_id,
            timestamp=at,
        )

    # -- queries -----------------------------------------------------------------------

    def is_participant(self, user_id: UUID) -> bool:
        return str(user_id) in self.participants

    def participant(self, user_id: UUID) -> Participant:
        try:
            return self.participants[str(user_id)]
        except KeyError:
            raise NotParticipant("only participants may do this") from None

    def invite_reveals_to(self, user_id: UUID) -> bool:
        """Whether someone holding the invite code may learn that this challenge exists.

        Its owner and participants may; once published, so may anyone the challenge admits
        (everyone for a public or unlisted one, the allow-listed for a private one). To anyone
        else the code must look like no code at all, or codes could be probed for existence.
        """
        return self.is_visible_to(user_id, is_admin=False)

    def is_visible_to(self, user_id: UUID, is_admin: bool) -> bool:
        """Whether the user may see the challenge at all (rules §7); to anyone else it does
        not exist. Admins, the owner and participants always may; a draft nobody else; a
        private challenge only the allow-listed; a public or unlisted one everyone."""
        if is_admin or user_id == self.owner_id or self.is_participant(user_id):
            return True
        if self.status == DRAFT:
            return False
        return self.terms.visibility != Visibility.PRIVATE or user_id in self.terms.allow_list

    def acts_as_admin(self, user_id: UUID, is_admin: bool) -> bool:
        """Whether a command by this user is an admin's intervention (recorded as such)
        rather than the owner managing their own challenge."""
        return is_admin and user_id != self.owner_id

    @property
    def outcome(self) -> ChallengeResult | None:
        """How the challenge ended, as shown to users: ``cancelled``, ``paid_out`` (someone
        finished) or ``forfeited`` (nobody did); ``None`` while it has not ended."""
        if self.status == CANCELLED:
            return ChallengeResult.CANCELLED
        if self.status == SETTLED:
            return ChallengeResult.PAID_OUT if self.finishers else ChallengeResult.FORFEITED
        return None

    def allow_list_shown_to(self, reader_id: UUID, is_admin: bool) -> bool:
        """The allow-list names other users: only the owner and admins see it (rules §7)."""
        return is_admin or reader_id == self.owner_id

    def photo_flags(
        self, sha256: str, submission_id: UUID | None = None
    ) -> tuple[SubmissionFlag, ...]:
        """``("duplicate",)`` when another submission of this challenge already carried the
        same photo (by SHA-256); the first submission with a photo is never the duplicate.
        Text proofs (no hash) are never flagged."""
        first = self.photo_hashes.get(sha256) if sha256 else None
        duplicate = first is not None and first != str(submission_id)
        return (SubmissionFlag.DUPLICATE,) if duplicate else ()

    def flags_of(self, record: SubmissionRecord) -> tuple[SubmissionFlag, ...]:
        """The flags a submission carries: those recorded when it arrived, and the
        ``duplicate`` flag (recomputed, so submissions recorded before flags were kept
        show it too)."""
        return ordered((*record.flags, *self.photo_flags(record.sha256, record.submission_id)))

    def accepts_votes(self, at: datetime, delay: timedelta) -> bool:
        """Peer review runs while the challenge is active and until it settles."""
        return self.status == ACTIVE and at < self.settles_at(delay)

    def check_votes_accepted(self, at: datetime, delay: timedelta) -> None:
        """Refuse a vote once the challenge is no longer active or voting has closed."""
        if self.status != ACTIVE:
            raise VoteRefused(f"the challenge is {self.status}")
        if at >= self.settles_at(delay):
            raise VoteRefused("voting has closed")

    def may_settle(self, by: UUID | None, is_admin: bool) -> bool:
        """The owner, an admin, or the settlement worker (``by=None``) may ask for a settle."""
        return by is None or is_admin or by == self.owner_id

    @property
    def is_open(self) -> bool:
        return self.status in (DRAFT, ACTIVE)

    def settles_at(self, delay: timedelta) -> datetime:
        return self.terms.ends_at + delay

    # -- commands ----------------------------------------------------------------------

    def edit(self, by: UUID, terms: ChallengeTerms, cause: Cause, at: datetime) -> None:
        self._require_owner(by)
        if self.status != DRAFT:
            raise ChallengeNotEditable("rules may be edited only in draft")
        _check_private_list(terms)
        self._record(self.Edited, cause, at, terms=terms.as_fields())

    def publish(self, by: UUID, timezone: str | None, cause: Cause, at: datetime) -> int:
        """Open the challenge for joining, with the owner as first participant.

        Returns the owner's stake, which the application locks in the same save.
        """
        self._require_owner(by)
        if self.status != DRAFT:
            raise ChallengeNotJoinable("only a draft can be published")
        if at >= self.terms.starts_at:
            raise ChallengeNotJoinable("a challenge must be published before it starts")
        self._record(self.Published, cause, at)
        self._join(by, timezone or self.terms.timezone, cause, at)
        return self.terms.entry_stake

    def join(self, user_id: UUID, timezone: str, cause: Cause, at: datetime) -> bool:
        """Join before the start; returns False when already a participant (no 2nd stake)."""
        if self.is_participant(user_id) and self.status == ACTIVE:
            return False
        if self.status != ACTIVE:
            raise ChallengeNotJoinable(f"the challenge is {self.status}")
        if at >= self.terms.starts_at:
            raise ChallengeNotJoinable("the challenge has started")
        if self.terms.visibility == Visibility.PRIVATE and user_id not in self.terms.allow_list:
            raise NotAllowListed("this private challenge is by invitation only")
        if len(self.participants) >= self.terms.max_participants:
            raise ChallengeFull("the challenge is full")
        self._join(user_id, timezone, cause, at)
        return True

    def cancel(
        self, by: UUID | None, is_admin: bool, reason: str, cause: Cause, at: datetime
    ) -> list[Participant]:
        """Cancel; returns the participants whose stakes and penalties must go back.

        ``by=None`` is the settlement worker, which cancels only a challenge that reached
        its start with fewer than two participants.
        """
        if not self.is_open:
            raise NotCancellable(f"the challenge is {self.status}")
        if by is None:
            if not (
                self.status == ACTIVE and at >= self.terms.starts_at and len(self.participants) < 2
            ):
                raise NotCancellable("the challenge has enough participants")
        elif not is_admin:
            self._require_owner(by)
            if self.status == ACTIVE and at >= self.terms.starts_at:
                raise NotCancellable("an owner may cancel only before the start")
        reason = reason.strip()[:500] or "cancelled"
        returning = list(self.participants.values())
        self._record(
            self.Cancelled,
            cause,
            at,
            reason=reason,
            stakes_returned=sum(p.stake for p in returning),
            penalties_returned=sum(p.penalties for p in returning),
        )
        return returning

    def plan_submission(self, user_id: UUID, proof_type: str, at: datetime) -> tuple[str, UUID]:
        """The slot and id a submission made now would get, or the refusal it would meet
        (rules §4); nothing is recorded."""
        participant = self.participant(user_id)
        if self.status != ACTIVE:
            raise SubmissionRefused(f"the challenge is {self.status}")
        if not self.terms.starts_at <= at < self.terms.ends_at:
            raise SubmissionRefused("submissions are accepted only while the challenge runs")
        if proof_type not in self.terms.proof_types:
            raise ProofTypeNotAllowed(f"{proof_type} proofs are not allowed here")
        tz = governing_timezone(self.terms.window, participant.timezone)
        slot = slot_of(at, self.terms.frequency, self.terms.window, tz)
        if slot is None:
            raise SubmissionRefused("outside the challenge's time window")
        submission_id = ids.submission_id(self.id, user_id, slot.isoformat())
        if str(submission_id) in self.submissions:
            raise DuplicateSubmission("one submission per participant per slot")
        return slot.isoformat(), submission_id

    def receive_submission(
        self,
        user_id: UUID,
        proof_type: str,
        photo: PhotoEvidence | None,
        cause: Cause,
        at: datetime,
        rules: PhotoRules | None = None,
    ) -> NewSubmission:
        """Place a submission in its slot; refuse it outside the rules, and flag a doubtful
        photo (rules §4). A flag other than a missing capture time sends the photo to
        peer review whatever the challenge's mode."""
        slot, submission_id = self.plan_submission(user_id, proof_type, at)
        found = () if photo is None else self._judge(user_id, slot, photo, at, rules)
        flags = tuple(f.name for f in found)
        eligible = len(self.participants) - 1
        review = self.terms.verification_mode == VerificationMode.QUORUM or forces_review(flags)
        pending = review and eligible > 0
        status = SubmissionStatus.PENDING if pending else SubmissionStatus.ACCEPTED
        self._record(
            self.SubmissionReceived,
            cause,
            at,
            submission_id=submission_id,
            user_id=user_id,
            slot=slot,
            status=status,
            sha256="" if photo is None else photo.sha256,
            phash="" if photo is None else photo.phash,
            flags=flags,
        )
        return NewSubmission(
            submission_id, slot, status, flags, eligible, tuple(f.reason for f in found)
        )

    def record_verdict(
        self,
        submission_id: UUID,
        status: SubmissionStatus,
        penalty: int,
        cause: Cause,
        at: datetime,
    ) -> None:
        self._record(
            self.SubmissionDecided,
            cause,
            at,
            submission_id=submission_id,
            user_id=self.submissions[str(submission_id)].user_id,
            status=status,
            penalty=penalty,
        )

    def settle(
        self,
        fee_bps: int,
        delay: timedelta,
        cause: Cause,
        at: datetime,
        *,
        by: UUID | None = None,
        is_admin: bool = False,
    ) -> Outcome | Cancellation | None:
        """Divide the pool once the settlement time has passed; settling twice is a no-op.

        Only the owner, an admin or the settlement worker (``by=None``) may ask (checked
        before anything else, so a stranger learns nothing from the answer). A challenge
        that started with fewer than two participants has nobody to compete with: whoever
        asks for the settle (owner, admin or worker), it is cancelled and every stake goes
        back, so a lone stake can never become revenue.
        """
        if not self.may_settle(by, is_admin):
            raise Forbidden("only the owner or an admin may settle")
        if self.status == SETTLED:
            return None
        if self.status != ACTIVE:
            raise NotSettleable(f"the challenge is {self.status}")
        if len(self.participants) < 2 and at >= self.terms.starts_at:
            return Cancellation(
                tuple(self.cancel(None, False, "fewer than 2 participants", cause, at))
            )
        if at < self.settles_at(delay):
            raise NotSettleable(f"the challenge settles at {self.settles_at(delay).isoformat()}")
        accepted: dict[str, set[str]] = {}
        pending: list[UUID] = []
        accepted_at_close: list[UUID] = []
        mode = self.terms.verification_mode
        for record in self.submissions.values():
            if record.status == SubmissionStatus.PENDING and accepted_when_voting_closes(
                self.flags_of(record), mode
            ):
                accepted_at_close.append(record.submission_id)
                accepted.setdefault(str(record.user_id), set()).add(record.slot)
            elif record.status == SubmissionStatus.ACCEPTED:
                accepted.setdefault(str(record.user_id), set()).add(record.slot)
            elif record.status == SubmissionStatus.PENDING:
                pending.append(record.submission_id)
        counted = []
        for p in self.participants.values():
            tz = governing_timezone(self.terms.window, p.timezone)
            expected = len(
                expected_slots(
                    self.terms.starts_at,
                    self.terms.ends_at,
                    self.terms.frequency,
                    self.terms.window,
                    tz,
                )
            )
            got = len(accepted.get(str(p.user_id), ()))
            counted.append((p, expected, got, finishes(expected, got, self.terms.grace)))
        split = split_pool(self.pool, fee_bps, [p.user_id for p, _, _, done in counted if done])
        results = tuple(
            ParticipantResult(
                p.user_id, expected, got, done, p.stake, split.shares.get(p.user_id, 0)
            )
            for p, expected, got, done in counted
        )
        returned = sum(min(r.share, r.stake) for r in results)
        self._record(
            self.Settled,
            cause,
            at,
            pool=self.pool,
            fee=split.fee,
            forfeited=split.forfeited,
            returned=returned,
            paid_out=sum(r.share for r in results) - returned,
            results=tuple(
                (r.user_id, r.expected, r.accepted, r.finished, r.stake, r.share) for r in results
            ),
            closed_submissions=tuple(pending),
            accepted_at_close=tuple(accepted_at_close),
        )
        return Outcome(split, results, tuple(pending), tuple(accepted_at_close))

    # -- helpers -----------------------------------------------------------------------

    def _judge(
        self,
        user_id: UUID,
        slot: str,
        photo: PhotoEvidence,
        at: datetime,
        rules: PhotoRules | None,
    ) -> tuple[Flag, ...]:
        """The flags a new photo earns against this challenge's earlier photos and the
        windows of its slot (the participant's timezone reads a capture time without
        offset)."""
        participant = self.participants[str(user_id)]
        tz = governing_timezone(self.terms.window, participant.timezone)
        windows = slot_windows(
            date.fromisoformat(slot),
            self.terms.frequency,
            self.terms.window,
            tz,
        )
        return judge(
            photo,
            self.photo_hashes.get(photo.sha256),
            ((str(r.submission_id), r.sha256, r.phash) for r in self.submissions.values()),
            windows,
            participant.timezone,
            at,
            rules or PhotoRules(),
        )

    def _join(self, user_id: UUID, timezone: str, cause: Cause, at: datetime) -> None:
        try:
            validate_timezone(timezone)
        except ValueError as e:
            raise InvalidField(f"unknown timezone {timezone!r}") from e
        self._record(
            self.Joined,
            cause,
            at,
            user_id=user_id,
            timezone=timezone,
            stake=self.terms.entry_stake,
        )

    def _require_owner(self, by: UUID) -> None:
        if by != self.owner_id:
            raise Forbidden("only the owner may do this")


def _check_private_list(terms: ChallengeTerms) -> None:
    if terms.visibility != Visibility.PRIVATE and terms.allow_list:
        raise InvalidField("an allow-list is only for private challenges")


def _terms_from_event(terms: dict[str, Any]) -> dict[str, Any]:
    """Stored terms decode lists where tuples were written; restore the value types."""
    restored = dict(terms)
    restored["allow_list"] = tuple(UUID(str(u)) for u in terms["allow_list"])
    restored["proof_types"] = tuple(terms["proof_types"])
    return restored
