"""``Idempotency-Key``: a command run once per key, its answer replayed (rules §7).

With a key, scoped to the user and the route and kept 24 h:

- the same key and body → the first response again (status and body): `Replayed`;
- the same key with another body → `IdempotencyKeyReused`;
- the same key while the first request still runs → `IdempotencyKeyInUse` (retry in a
  second); a claim left ``running`` for 60 s is taken to be abandoned and the next request
  runs the command again;
- an error raised by the command (a domain refusal, an HTTP refusal) *releases* the key: no
  response was stored, so the client may fix the cause (e.g. deposit more) and retry with
  the same key.

A command that creates something (a withdrawal, an adjustment, a checkout, a challenge) takes
its id from the key's record (`Operation.id`): drawn at random when the key is first claimed,
the same for every retry of the key (after an error, a lost commit or a takeover), so a retry
can never make a second one; without a key every request gets a new random id. Nothing the
client sends becomes an id.

A command run with a *responder* has its response stored in the same transaction as its
events: the operation puts a `PendingResponse` in a context variable around the command
(`responding`), and the event store's recorder (``adapters.atomic_responses``) asks it for the
response once the events are inserted and stores it on their cursor. A crash after the commit
leaves the response to replay, and a failure storing it rolls the events back. Otherwise (a
command that saved no events, such as a re-join, or one without a responder: the deposit
checkout, whose effect is at Stripe) the response is stored just after the command.

The keys themselves live in an `IdempotencyKeys` store (``adapters.idempotency_keys``); the
HTTP side (``api.idempotency``) only names the route and the caller and answers a replay.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel

from domain.errors import Conflict, InvalidField

log = logging.getLogger("peerpush.idempotency")

MAX_KEY_LENGTH = 255


class Outcome(enum.Enum):
    STARTED = "started"  # the caller holds the key: run the command, then complete or release
    REPLAY = "replay"  # done before with the same body: answer with the stored response
    MISMATCH = "mismatch"  # the key was used with another body
    RUNNING = "running"  # the first request with this key is still running


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    user_id: UUID
    route: str
    key: str
    token: UUID | None = None
    status: int | None = None
    body: Any = None
    # The id of what the command creates, the same for every claim of this key (STARTED only).
    operation_id: UUID | None = None


class IdempotencyKeys(Protocol):
    """Where keys are claimed, completed and released, shared by every process."""

    def begin(self, user_id: UUID, route: str, key: str, request_hash: str) -> Claim: ...

    def complete(self, claim: Claim, status: int, body: Any) -> bool: ...

    def release(self, claim: Claim) -> None: ...


class InvalidIdempotencyKey(InvalidField):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(InvalidField):
    code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    retry_after = 1


class Replayed(Exception):
    """Not an error: a repeated request, to be answered with the response first given for
    its key (the HTTP side answers it)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def request_hash(body: Any) -> str:
    """A stable digest of a request body: key order and formatting do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_key(store: IdempotencyKeys, user_id: UUID, route: str, key: str, body: Any) -> Claim:
    """Claim (user, route, key) for ``body``: a started claim, or the answer a repeat gets
    (`Replayed`, or a refusal for another body or while the first still runs)."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"Idempotency-Key is 1–{MAX_KEY_LENGTH} printable ASCII characters"
        )
    claim = store.begin(user_id, route, key, request_hash(body))
    if claim.outcome is Outcome.REPLAY:
        assert claim.status is not None
        raise Replayed(claim.status, claim.body)
    if claim.outcome is Outcome.MISMATCH:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
    if claim.outcome is Outcome.RUNNING:
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is still being processed")
    return claim


# -- the response stored with the command's events ----------------------------------------

# (operation id, last position, aggregates saved) -> (status, JSON body), or None when this
# save is not one the response can be built from (it is then stored after the command).
Responder = Callable[[UUID, int, Sequence[object]], tuple[int, Any] | None]


@dataclass
class PendingResponse:
    """The response a claimed request will store with its command's events."""

    claim: Claim
    operation_id: UUID
    respond: Responder
    # The response stored by a save that committed; None if no save stored one.
    written: tuple[int, Any] | None = None
    _candidate: tuple[int, Any] | None = None


_PENDING: ContextVar[PendingResponse | None] = ContextVar("peerpush_pending_response", default=None)


def pending_response() -> PendingResponse | None:
    """The response the save under way is to store with its events, if any."""
    return _PENDING.get()


@contextmanager
def responding(pending: PendingResponse | None) -> Iterator[PendingResponse | None]:
    """Saves made inside this block store ``pending``'s response with their events."""
    token = _PENDING.set(pending)
    try:
        yield pending
    finally:
        _PENDING.reset(token)


# -- one command under a key ----------------------------------------------------------------

Answer = TypeVar("Answer", bound=BaseModel)

# (operation id, last position, aggregates saved) -> the response, or None when this save is
# not one the response can be built from (it is then stored after the command).
Respond = Callable[[UUID, int, Sequence[object]], BaseModel | None]


@dataclass
class Operation:
    """One run of a command under a claimed key (or without a key): its id, and the answer
    (with its status) stored for the key. ``answered`` hears the status finally given."""

    id: UUID
    status: int
    answered: Callable[[int], None] | None = None
    store: IdempotencyKeys | None = None
    claim: Claim | None = None
    build: Respond | None = None
    pending: PendingResponse | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.claim is not None and self.build is not None:
            self.pending = PendingResponse(self.claim, self.id, self._stored)

    def _stored(self, operation_id: UUID, position: int, saved: Sequence[object]) -> Any:
        # A save writes events only when the command changed something, so a response built
        # here carries the route's own status (a join's 201, not a re-join's 200).
        assert self.build is not None
        built = self.build(operation_id, position, saved)
        return None if built is None else (self.status, built.model_dump(mode="json"))

    def answer(self, answer: Answer, status: int | None = None) -> Answer:
        """The command's answer, with ``status`` when it depends on the outcome (the usual
        status otherwise): stored for the key unless the command's save stored one, in which
        case that one (the same, built from what the save wrote) is the answer."""
        written = self.pending.written if self.pending is not None else None
        if written is not None:
            status, answer = written[0], type(answer).model_validate(written[1])
        elif status is None:
            status = self.status
        if self.answered is not None:
            self.answered(status)
        if written is not None or self.claim is None or self.store is None:
            return answer
        if not self.store.complete(self.claim, status, answer.model_dump(mode="json")):
            log.warning(
                "idempotency claim on %s was taken over before it completed", self.claim.route
            )
        return answer


@dataclass
class IdempotentCommand:
    """A mutating request's ``Idempotency-Key`` (maybe none), its caller and its route."""

    store: IdempotencyKeys
    user_id: UUID
    route: str
    status: int
    key: str | None
    answered: Callable[[int], None] | None = None

    @contextmanager
    def operation(
        self, body: BaseModel | None, respond: Respond | None = None
    ) -> Iterator[Operation]:
        """Claim the key for ``body`` (None: a request without a body) and run the block
        once per key: a repeat is replayed (`Replayed`) before the block. The block's error
        gives the key back (no answer was stored), and the block answers through
        `Operation.answer`.

        With ``respond``, the save of the command stores ``respond(id, position, saved)`` with
        its events."""
        if self.key is None:
            yield Operation(uuid4(), self.status, self.answered)
            return
        # The JSON form (a datetime's ISO form, not ``str()``'s), as keys were always hashed.
        fingerprint = {} if body is None else body.model_dump(mode="json")
        claim = claim_key(self.store, self.user_id, self.route, self.key, fingerprint)
        assert claim.operation_id is not None, "a started claim names its operation"
        operation = Operation(
            claim.operation_id, self.status, self.answered, self.store, claim, respond
        )
        try:
            with responding(operation.pending):
                yield operation
        except BaseException:
            try:
                self.store.release(claim)
            except Exception:  # the command's own error matters more; the claim ages out anyway
                log.exception("could not release idempotency key for %s", self.route)
            raise
