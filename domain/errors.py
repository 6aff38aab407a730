"""Named refusals of the business rules.

Every refusal a client can see is one of these, so the API maps them to statuses in one
place and the domain never uses ``assert`` for a business rule. What a refusal tells the
caller beyond its code and message (the amounts involved, when to try again) is declared
with it (`DomainError.details`, `DomainError.retry_after`); the API only translates.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command was refused by a business rule; nothing was changed."""

    code = "domain_error"
    retry_after: int | None = None
    """Seconds after which the same command may succeed (None: not by waiting)."""

    def details(self) -> dict[str, Any]:
        """What the caller learns beyond the code and the message (the amounts involved)."""
        return {}


class InvalidAmount(DomainError):
    """A token amount is not a positive whole number within limits (rules §1)."""

    code = "invalid_amount"


class InvalidField(DomainError):
    """A field of a command is outside what the rules allow."""

    code = "invalid_field"


class InsufficientFunds(DomainError):
    """The wallet cannot afford the debit (402)."""

    code = "insufficient_funds"

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} tokens, {available} available")
        self.needed = needed
        self.available = available

    def details(self) -> dict[str, Any]:
        return {"needed": self.needed, "available": self.available}


class NotRefundable(DomainError):
    """More was asked back to the card than the refundable lots hold (409)."""

    code = "not_refundable"

    def __init__(self, requested: int, refundable: int) -> None:
        super().__init__(f"requested {requested} tokens, {refundable} refundable")
        self.requested = requested
        self.refundable = refundable

    def details(self) -> dict[str, Any]:
        return {"requested": self.requested, "refundable": self.refundable}


class NotFound(DomainError):
    """The thing named does not exist (or is not the caller's to see)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller may not do this (403)."""

    code = "forbidden"


class Conflict(DomainError):
    """The state of the thing forbids the command right now (409)."""

    code = "conflict"


class ChallengeNotEditable(Conflict):
    code = "challenge_not_editable"


class ChallengeNotJoinable(Conflict):
    code = "challenge_not_joinable"


class ChallengeFull(Conflict):
    code = "challenge_full"


class NotAllowListed(Forbidden):
    code = "not_allow_listed"


class NotParticipant(Forbidden):
    code = "not_participant"


class NotCancellable(Conflict):
    code = "not_cancellable"


class NotSettleable(Conflict):
    code = "not_settleable"


class SubmissionRefused(Conflict):
    """A submission outside the challenge's time, window or rules (409)."""

    code = "submission_refused"


class ProofTypeNotAllowed(DomainError):
    code = "proof_type_not_allowed"


class InvalidProof(InvalidField):
    """A proof that is not what its type says (no text, no file, both) (422)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class ProofTooLarge(InvalidField):
    """A proof beyond its size limit (413)."""

    code = "proof_too_large"


class DuplicateSubmission(Conflict):
    code = "duplicate_submission"


class VoteRefused(Conflict):
    code = "vote_refused"


class DuplicateVote(Conflict):
    code = "duplicate_vote"


class OwnSubmission(Forbidden):
    code = "own_submission"


class UnknownWithdrawal(NotFound):
    code = "unknown_withdrawal"


class OutcomeAlreadyRecorded(Conflict):
    code = "outcome_already_recorded"


class UnknownLot(NotFound):
    code = "unknown_lot"


class ConcurrencyConflict(Conflict):
    """Version conflicts persisted past the bounded retries (409)."""

    code = "version_conflict"


class WalletClosed(Conflict):
    """The wallet's owner was erased: nobody may move its tokens any more (rules §7)."""

    code = "wallet_closed"


class NotCashoutable(DomainError):
    """More was asked to cash out than the payout and adjustment lots past their hold hold,
    or than the rolling daily cap still allows (409, rules §2)."""

    code = "not_cashoutable"

    def __init__(self, requested: int, cashoutable: int, reason: str) -> None:
        super().__init__(f"requested {requested} tokens, {cashoutable} cash-out-able ({reason})")
        self.requested = requested
        self.cashoutable = cashoutable
        self.reason = reason

    def details(self) -> dict[str, Any]:
        return {"requested": self.requested, "cashoutable": self.cashoutable, "reason": self.reason}


class BelowMinimumCashout(InvalidAmount):
    """A cash-out below ``MIN_CASHOUT_TOKENS`` (422, rules §2)."""

    code = "below_minimum_cashout"


class PayoutAccountNotEnabled(Conflict):
    """No Stripe Connect account with payouts enabled is linked to the user (409, rules §2)."""

    code = "payout_account_not_enabled"


class UnknownCashout(NotFound):
    code = "unknown_cashout"


class UnsupportedPhoto(DomainError):
    """A photo proof that is not a JPEG or a PNG, or whose bytes are another type than the
    one it was declared as or decode as (415, rules §4)."""

    code = "unsupported_image"


class InvalidPhoto(InvalidField):
    """A photo that does not decode whole: truncated, corrupt, or more pixels than
    allowed (422, rules §4)."""

    code = "invalid_photo"


class PhotoTooManyPixels(InvalidPhoto):
    """A photo larger, once decoded, than ``MAX_PHOTO_PIXELS`` (a decompression bomb, 422)."""

    code = "photo_too_many_pixels"
