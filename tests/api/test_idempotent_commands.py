"""The challenge and submission commands under an ``Idempotency-Key`` (rules §7): keys stored
under the route strings the routes once typed still replay, a join's status is kept with its
response, and the response of a join, a submission and a vote is written in the command's own
transaction (a crash after the commit leaves it to replay; a failure storing it undoes the
command)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from api.idempotency import REPLAYED_HEADER
from application.idempotency import Outcome, PendingResponse, request_hash, responding
from domain.aggregate import Cause
from domain.errors import NotFound
from tests.api.test_challenges import Player, Stack, challenge_body, next_midnight, text
from tests.batching import HeldWriter, in_threads, joined


@pytest.fixture
def stack(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Any]
) -> Stack:
    return Stack(api_client, api_services, register_user)


def key_header() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}


def store_old_response(
    services: Services, user_id: UUID, route: str, key: str, body: Any, stored: Any
) -> None:
    """A response stored, before the dependency, under a hand-typed route string."""
    claim = services.idempotency.begin(user_id, route, key, request_hash(body))
    assert claim.outcome is Outcome.STARTED
    assert services.idempotency.complete(claim, 201, stored)


def open_challenge(stack: Stack, **overrides: Any) -> tuple[str, str, Player]:
    """A published challenge, not started: its id, invite code and owner."""
    owner = stack.user()
    body = challenge_body(next_midnight(stack.now()), **overrides)
    cid = owner.post("/challenges", json=body).json()["id"]
    published = owner.post(f"/challenges/{cid}/publish")
    assert published.status_code == 200, published.text
    return cid, published.json()["invite_code"], owner


def join(who: Player, code: str, **headers: str) -> Any:
    return who.post(
        "/challenges/join", json={"invite_code": code, "timezone": "UTC"}, headers=headers
    )


def running_quorum_challenge(stack: Stack) -> tuple[str, list[Player]]:
    """Three participants, peer review by quorum (two of the two others), first slot open."""
    rules = challenge_body(stack.now())["rules"]
    cid, code, owner = open_challenge(
        stack, rules={**rules, "verification": {"mode": "quorum", "quorum_pct": 60}}
    )
    players = [owner]
    for _ in range(2):
        p = stack.user()
        assert join(p, code).status_code == 201
        players.append(p)
    stack.advance_to(owner, next_midnight(stack.now()) + timedelta(hours=1))
    return cid, players


def submit_text(who: Player, cid: str, words: str, **headers: str) -> Any:
    return who.post(
        f"/challenges/{cid}/submissions",
        data={"proof_type": "text", "text": words},
        headers=headers,
    )


def on(client: TestClient, who: Player) -> Player:
    return Player(client, who.id, who.headers)


class Died(Exception):
    """The process dying just after the commit."""


def die_after_commit(services: Services, patch: pytest.MonkeyPatch) -> None:
    """Every save commits and then the process dies: nothing after the commit runs, not even
    giving the key back. (``_notify`` is what every save calls once its events committed,
    alone or in a group commit.)"""

    def die(*_: Any, **__: Any) -> None:
        raise Died

    patch.setattr(services.ledger, "_notify", die)
    patch.setattr(services.idempotency, "release", lambda claim: None)


# -- keys stored under the old route strings ----------------------------------------------


def test_a_publish_key_stored_under_the_old_route_string_replays(stack: Stack) -> None:
    owner = stack.user()
    cid = owner.post("/challenges", json=challenge_body(next_midnight(stack.now()))).json()["id"]
    key, stored = str(uuid.uuid4()), {"stored": "before the upgrade"}
    # The route hashed ``PublishIn(timezone=None).model_dump()`` when no body was sent.
    route = f"POST /challenges/{UUID(cid)}/publish"
    store_old_response(stack.services, owner.id, route, key, {"timezone": None}, stored)
    replay = owner.post(f"/challenges/{cid}/publish", headers={"Idempotency-Key": key})
    assert replay.status_code == 201, replay.text
    assert replay.json() == stored
    assert replay.headers[REPLAYED_HEADER] == "true"
    assert stack.services.ledger.challenge(UUID(cid)).status == "draft"  # not run again


def test_a_challenge_id_spelled_in_capitals_is_the_same_key(stack: Stack) -> None:
    owner = stack.user()
    cid = owner.post("/challenges", json=challenge_body(next_midnight(stack.now()))).json()["id"]
    headers = key_header()
    first = owner.post(f"/challenges/{cid}/publish", headers=headers)
    assert first.status_code == 200, first.text
    again = owner.post(f"/challenges/{cid.upper()}/publish", headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.json() == first.json()


def test_a_submission_key_stored_under_the_old_route_string_replays(stack: Stack) -> None:
    cid, (owner, *_) = running_quorum_challenge(stack)
    key, stored = str(uuid.uuid4()), {"stored": "before the upgrade"}
    words = "ran 5 km"
    body = {"proof_type": "text", "sha256": hashlib.sha256(words.encode()).hexdigest()}
    route = f"POST /challenges/{UUID(cid)}/submissions"
    store_old_response(stack.services, owner.id, route, key, body, stored)
    replay = owner.post(
        f"/challenges/{cid}/submissions",
        data={"proof_type": "text", "text": words},
        headers={"Idempotency-Key": key},
    )
    assert replay.status_code == 201, replay.text
    assert replay.json() == stored
    assert replay.headers[REPLAYED_HEADER] == "true"
    assert not stack.services.ledger.challenge(UUID(cid)).submissions  # not run again


def test_a_vote_key_stored_under_the_old_route_string_replays(stack: Stack) -> None:
    voter, submission = stack.user(), uuid.uuid4()
    key, stored = str(uuid.uuid4()), {"stored": "before the upgrade"}
    route = f"POST /submissions/{submission}/votes"
    store_old_response(stack.services, voter.id, route, key, {"approve": True}, stored)
    replay = voter.post(
        f"/submissions/{submission}/votes",
        json={"approve": True},
        headers={"Idempotency-Key": key},
    )
    assert replay.status_code == 201, replay.text
    assert replay.json() == stored


# -- a join's status is part of its response ----------------------------------------------


def test_a_join_and_a_rejoin_replay_with_their_own_status(stack: Stack) -> None:
    _, code, _ = open_challenge(stack)
    player = stack.user()
    first_key, again_key = key_header(), key_header()
    first = join(player, code, **first_key)
    again = join(player, code, **again_key)
    assert (first.status_code, first.json()["joined"]) == (201, True)
    assert (again.status_code, again.json()["joined"]) == (200, False)
    replayed_first = join(player, code, **first_key)
    replayed_again = join(player, code, **again_key)
    assert (replayed_first.status_code, replayed_first.json()) == (201, first.json())
    assert (replayed_again.status_code, replayed_again.json()) == (200, again.json())
    assert replayed_first.headers[REPLAYED_HEADER] == "true"
    assert replayed_again.headers[REPLAYED_HEADER] == "true"


def test_a_rejoin_that_only_opens_a_missing_wallet_is_still_a_rejoin(stack: Stack) -> None:
    """A participation recorded without a wallet (a free challenge joined before joins opened
    one): the re-join saves only the wallet's opening, and answers, and stores, 200."""
    cid, code, _ = open_challenge(stack, entry_stake=0)
    player, ledger = stack.user(tokens=0), stack.services.ledger
    challenge = ledger.challenge(UUID(cid))
    challenge.join(player.id, "UTC", Cause.user(player.id, "older-join"), stack.now())
    ledger.save(challenge)
    with pytest.raises(NotFound):
        ledger.wallet_of(player.id)
    headers = key_header()
    again = join(player, code, **headers)
    assert (again.status_code, again.json()["joined"]) == (200, False), again.text
    assert ledger.wallet_of(player.id).available == 0  # opened by the re-join
    replay = join(player, code, **headers)
    assert (replay.status_code, replay.json()) == (200, again.json())
    assert replay.headers[REPLAYED_HEADER] == "true"


# -- responses stored in the command's transaction ----------------------------------------


def test_a_crash_after_a_join_commits_leaves_its_response_to_replay(
    stack: Stack, lenient_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, code, _ = open_challenge(stack)
    player, headers = on(lenient_client, stack.user()), key_header()
    with monkeypatch.context() as patch:
        die_after_commit(stack.services, patch)
        assert join(player, code, **headers).status_code == 500
    retry = join(player, code, **headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get(REPLAYED_HEADER) == "true"
    assert retry.json()["joined"] is True and retry.json()["challenge_id"] == cid
    assert stack.services.ledger.challenge(UUID(cid)).participant(player.id).stake == 100


def test_a_failure_storing_a_joins_response_undoes_the_join(
    stack: Stack, lenient_client: TestClient, failing_response_writes: None
) -> None:
    cid, code, _ = open_challenge(stack)
    player = on(lenient_client, stack.user())
    assert join(player, code, **key_header()).status_code == 500
    assert not stack.services.ledger.challenge(UUID(cid)).is_participant(player.id)
    assert stack.services.ledger.wallet_of(player.id).available == 1_000


def test_a_crash_after_a_submission_commits_leaves_its_response_to_replay(
    stack: Stack, lenient_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, (owner, *_) = running_quorum_challenge(stack)
    player, headers = on(lenient_client, owner), key_header()
    with monkeypatch.context() as patch:
        die_after_commit(stack.services, patch)
        assert submit_text(player, cid, "ran 5 km", **headers).status_code == 500
    retry = submit_text(player, cid, "ran 5 km", **headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get(REPLAYED_HEADER) == "true"
    assert retry.json()["status"] == "pending" and retry.json()["proof_type"] == "text"
    submissions = stack.services.ledger.challenge(UUID(cid)).submissions
    assert [str(s.submission_id) for s in submissions.values()] == [retry.json()["id"]]


def test_a_failure_storing_a_submissions_response_undoes_the_submission(
    stack: Stack, lenient_client: TestClient, failing_response_writes: None
) -> None:
    cid, (owner, *_) = running_quorum_challenge(stack)
    player, headers = on(lenient_client, owner), key_header()
    assert submit_text(player, cid, "ran 5 km", **headers).status_code == 500
    assert not stack.services.ledger.challenge(UUID(cid)).submissions


def submitted(stack: Stack, cid: str, who: Player) -> str:
    made = text(who, cid, "ran 5 km")
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_a_crash_after_a_vote_commits_leaves_its_response_to_replay(
    stack: Stack, lenient_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, (owner, voter, _) = running_quorum_challenge(stack)
    submission = submitted(stack, cid, owner)
    ballot, headers = on(lenient_client, voter), key_header()
    path = f"/submissions/{submission}/votes"
    with monkeypatch.context() as patch:
        die_after_commit(stack.services, patch)
        assert ballot.post(path, json={"approve": True}, headers=headers).status_code == 500
    retry = ballot.post(path, json={"approve": True}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get(REPLAYED_HEADER) == "true"
    assert (retry.json()["status"], retry.json()["approvals"]) == ("pending", 1)
    assert stack.services.ledger.verification(UUID(submission)).approvals == [str(voter.id)]


def test_a_failure_storing_a_votes_response_undoes_the_vote(
    stack: Stack, lenient_client: TestClient, failing_response_writes: None
) -> None:
    cid, (owner, voter, _) = running_quorum_challenge(stack)
    submission = text(owner, cid, "ran 5 km")  # no key: its response is not stored
    assert submission.status_code == 201, submission.text
    ballot = on(lenient_client, voter)
    path = f"/submissions/{submission.json()['id']}/votes"
    assert ballot.post(path, json={"approve": True}, headers=key_header()).status_code == 500
    assert stack.services.ledger.verification(UUID(submission.json()["id"])).approvals == []


# -- responses of commands sharing one group commit ----------------------------------------


def test_commands_sharing_a_batch_store_their_own_responses_and_one_failing_fails_alone(
    stack: Stack,
) -> None:
    """Three withdrawals queued into one batch, each under its own key: each response is
    built from its own position and stored in the batch's transaction; the one whose
    response cannot be built fails alone, its tokens untouched, its key still running."""
    ledger, keys = stack.services.ledger, stack.services.idempotency
    assert ledger.group_commit is not None
    players = [stack.user(tokens=500) for _ in range(3)]
    claims = [
        keys.begin(p.id, "POST /wallet/withdrawals", f"k-{uuid.uuid4().hex}", "body")
        for p in players
    ]

    def respond(_: UUID, position: int, saved: Any) -> tuple[int, Any]:
        return 202, {"position": position}

    def broken(_: UUID, position: int, saved: Any) -> tuple[int, Any]:
        raise ValueError("this response cannot be rendered")

    pendings = [
        PendingResponse(claim, uuid.uuid4(), broken if i == 1 else respond)
        for i, claim in enumerate(claims)
    ]

    def withdraw(player: Player, pending: PendingResponse) -> Any:
        with responding(pending):
            return ledger.request_withdrawal(player.id, uuid.uuid4(), 100, Cause.user(player.id))

    held = HeldWriter(ledger.group_commit)
    bystander = held.hold(lambda: stack.user(tokens=1))
    threads, outcomes = in_threads(
        [lambda p=p, q=q: withdraw(p, q) for p, q in zip(players, pendings, strict=True)]
    )
    held.wait_queued(len(players))
    held.released.set()
    joined(bystander + threads)

    assert held.after == [3, 2]  # together, then again without the failing one
    (first, e0), (_, e1), (third, e2) = outcomes
    assert e0 is None and e2 is None and isinstance(e1, ValueError)
    assert pendings[0].written == (202, {"position": first.position})
    assert pendings[2].written == (202, {"position": third.position})
    assert pendings[1].written is None
    assert [ledger.wallet_of(p.id).available for p in players] == [400, 500, 400]
    for claim, state in zip(claims, ("done", "running", "done"), strict=True):
        again = keys.begin(claim.user_id, claim.route, claim.key, "body")
        assert again.outcome is (Outcome.REPLAY if state == "done" else Outcome.RUNNING)
