"""Challenges over HTTP, through the whole stack: app, ledger, PostgreSQL, read models.

Users register and sign in over HTTP (``tests/api/conftest.py``); wallets are funded with a
deposit credited through the ledger (Stripe has its own tests); business time moves with the
test clock (``POST /v1/test-clock/advance``). The module shares one app and one clock, so
every test places its challenges relative to the clock's current time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from domain.aggregate import Cause
from tests.photos import photo_bytes


@dataclass
class Player:
    """One signed-in user making requests."""

    client: TestClient
    id: UUID
    headers: dict[str, str]

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(f"/v1{path}", headers=self.headers, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.post(f"/v1{path}", headers=headers, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.client.patch(f"/v1{path}", headers=self.headers, **kw)


@dataclass
class Stack:
    client: TestClient
    services: Services
    register: Callable[..., Any]

    def user(self, tokens: int = 1_000, *, admin: bool = False) -> Player:
        account = self.register()
        if admin:
            assert self.services.users.set_role(account.email, "admin") is not None
        if tokens:
            self.services.ledger.credit_deposit(
                account.id, f"pi_test_{uuid.uuid4().hex}", tokens, Cause.stripe("evt_test")
            )
        return Player(self.client, account.id, account.headers)

    def now(self) -> datetime:
        return self.services.clock.now()

    def advance_to(self, who: Player, at: datetime) -> None:
        seconds = int((at - self.now()).total_seconds()) + 1
        if seconds > 0:
            r = who.post("/test-clock/advance", json={"seconds": seconds})
            assert r.status_code == 200, r.text

    def catch_up(self) -> None:
        self.services.projector.catch_up()

    def available(self, who: Player) -> int:
        self.catch_up()
        row = self.services.reads.wallet(who.id)
        assert row is not None
        return int(row["available"])


@pytest.fixture
def stack(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Any]
) -> Stack:
    return Stack(api_client, api_services, register_user)


def next_midnight(after: datetime, days: int = 2) -> datetime:
    return datetime.combine((after + timedelta(days=days)).date(), time(0), tzinfo=UTC)


def challenge_body(start: datetime, **overrides: Any) -> dict[str, Any]:
    """Two daily slots, a whole-day window in UTC: the slots are two calendar days."""
    body: dict[str, Any] = {
        "name": "Morning runs",
        "description": "one proof a day",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=2)).isoformat(),
        "entry_stake": 100,
        "max_participants": 5,
        "rules": {
            "frequency": "daily",
            "time_window": {
                "start": "00:00",
                "end": "00:00",
                "timezone": "UTC",
                "scope": "challenge_tz",
            },
            "proof_types": ["photo", "text"],
            "verification": {"mode": "auto", "quorum_pct": 60},
            "grace": 0,
            "penalty_tokens": 30,
        },
    }
    body.update(overrides)
    return body


def png(seed: str, taken_at: datetime | None = None) -> bytes:
    """A real PNG drawn from ``seed`` (tests/photos.py), with an EXIF capture time (UTC)
    when ``taken_at`` is given."""
    return photo_bytes(seed, taken_at=taken_at, offset="+00:00" if taken_at else None)


def photo(who: Player, challenge_id: str, data: bytes) -> Any:
    return who.post(
        f"/challenges/{challenge_id}/submissions",
        data={"proof_type": "photo"},
        files={"file": ("proof.png", data, "image/png")},
    )


def text(who: Player, challenge_id: str, words: str) -> Any:
    return who.post(
        f"/challenges/{challenge_id}/submissions", data={"proof_type": "text", "text": words}
    )


def test_a_challenge_is_played_from_draft_to_payout_over_http(stack: Stack) -> None:
    owner, bea, cy = stack.user(), stack.user(), stack.user()
    invited_only, outsider = stack.user(), stack.user()
    starts_at = next_midnight(stack.now())
    allow = [str(bea.id), str(cy.id), str(invited_only.id)]

    # Draft, edit, publish.
    r = owner.post("/challenges", json=challenge_body(starts_at, name="Runs"))
    assert r.status_code == 201, r.text
    created = r.json()
    cid, code = created["id"], created["invite_code"]
    assert created["status"] == "draft" and len(code) == 6 and created["position"] > 0
    r = owner.patch(
        f"/challenges/{cid}",
        json={"name": "Morning runs", "visibility": "private", "allow_list": allow},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Morning runs" and r.json()["rules"]["penalty_tokens"] == 30
    assert sorted(r.json()["allow_list"]) == sorted(allow)
    assert bea.get(f"/challenges/{cid}").status_code == 404  # a draft is its owner's alone
    r = owner.post(f"/challenges/{cid}/publish", json={"timezone": "UTC"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["pool"] == 100
    assert r.json()["me"] == {
        "participant": True,
        "owner": True,
        "timezone": "UTC",
        "stake": 100,
        "penalties": 0,
    }
    assert owner.patch(f"/challenges/{cid}", json={"name": "Later"}).status_code == 409

    # Join: once per user, invited users only.
    r = bea.post("/challenges/join", json={"invite_code": code, "timezone": "Europe/Paris"})
    assert r.status_code == 201, r.text
    assert r.json() == {
        "challenge_id": cid,
        "joined": True,
        "stake": 100,
        "timezone": "Europe/Paris",
        "position": r.json()["position"],
    }
    again = bea.post("/challenges/join", json={"invite_code": code.lower(), "timezone": "UTC"})
    assert again.status_code == 200 and again.json()["joined"] is False
    assert cy.post("/challenges/join", json={"invite_code": code, "timezone": "UTC"}).is_success
    r = outsider.post("/challenges/join", json={"invite_code": code, "timezone": "UTC"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"  # as if no such code
    assert outsider.get(f"/challenges/{cid}").status_code == 404
    assert outsider.patch(f"/challenges/{cid}", json={"name": "Mine"}).status_code == 404
    r = invited_only.get(f"/challenges/{cid}")
    assert r.status_code == 200 and r.json()["allow_list"] is None  # the owner's business
    assert r.json()["participants"] == 3 and r.json()["pool"] == 300

    # Day one: a text, a photo, and the same photo again (flagged, peer-reviewed).
    stack.advance_to(owner, starts_at + timedelta(hours=8))
    r = text(owner, cid, "ran 5 km")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "accepted" and r.json()["slot"] == starts_at.date().isoformat()
    assert text(owner, cid, "and again").status_code == 409  # one per slot
    first = photo(bea, cid, png("bea-day-1", starts_at + timedelta(hours=8)))
    assert first.status_code == 201 and first.json()["flags"] == []
    copied = photo(cy, cid, png("bea-day-1", starts_at + timedelta(hours=8)))
    assert copied.status_code == 201, copied.text
    assert copied.json()["status"] == "pending" and copied.json()["flags"] == ["duplicate"]
    sid = copied.json()["id"]

    assert [x["submission_id"] for x in owner.get("/reviews").json()] == []  # not projected
    stack.catch_up()
    review = owner.get("/reviews").json()
    assert [x["submission_id"] for x in review] == [sid]
    assert review[0]["flags"] == ["duplicate"] and review[0]["needed"] == 2
    assert cy.get("/reviews").json() == []  # not one's own

    # Votes: outsiders cannot see it, a non-participant may not, the submitter neither.
    assert outsider.post(f"/submissions/{sid}/votes", json={"approve": True}).status_code == 404
    r = invited_only.post(f"/submissions/{sid}/votes", json={"approve": True})
    assert r.status_code == 403 and r.json()["code"] == "not_participant"
    r = cy.post(f"/submissions/{sid}/votes", json={"approve": True})
    assert r.status_code == 403 and r.json()["code"] == "own_submission"
    r = owner.post(f"/submissions/{sid}/votes", json={"approve": False})
    assert r.status_code == 201, r.text
    assert r.json() == {
        "status": "rejected",
        "approvals": 0,
        "rejections": 1,
        "needed": 2,
        "eligible": 2,
        "position": r.json()["position"],
    }
    r = bea.post(f"/submissions/{sid}/votes", json={"approve": True})
    assert r.status_code == 409 and r.json()["code"] == "vote_refused"
    detail = cy.get(f"/submissions/{sid}").json()
    assert detail["status"] == "rejected" and detail["penalty"] == 30
    assert detail["mime_type"] == "image/png" and detail["my_vote"] is None
    assert owner.get(f"/submissions/{sid}").json()["my_vote"] == "reject"
    assert cy.get(f"/challenges/{cid}").json()["me"]["penalties"] == 30

    # Day two: everyone submits; the flagged copy is approved this time.
    stack.advance_to(owner, starts_at + timedelta(days=1, hours=8))
    assert text(owner, cid, "ran 6 km").json()["status"] == "accepted"
    assert (
        photo(bea, cid, png("bea-day-2", starts_at + timedelta(days=1, hours=8))).json()["status"]
        == "accepted"
    )
    again_copied = photo(cy, cid, png("bea-day-2", starts_at + timedelta(days=1, hours=8)))
    assert again_copied.json()["flags"] == ["duplicate"]
    sid2 = again_copied.json()["id"]
    assert owner.post(f"/submissions/{sid2}/votes", json={"approve": True}).json()["status"] == (
        "pending"
    )
    r = owner.post(f"/submissions/{sid2}/votes", json={"approve": True})
    assert r.status_code == 409 and r.json()["code"] == "duplicate_vote"
    r = bea.post(f"/submissions/{sid2}/votes", json={"approve": True})
    assert r.json()["status"] == "accepted" and r.json()["approvals"] == 2

    listed = owner.get(f"/challenges/{cid}/submissions").json()
    assert len(listed) == 6
    rejected = owner.get(f"/challenges/{cid}/submissions", params={"status": "rejected"}).json()
    assert [(x["id"], x["proof_type"], x["flags"]) for x in rejected] == [
        (sid, "photo", ["duplicate"])
    ]
    r = invited_only.get(f"/challenges/{cid}/submissions")
    assert r.status_code == 403

    # Settlement: not before ends_at + 24 h, not by a mere participant.
    r = owner.post(f"/challenges/{cid}/settle")
    assert r.status_code == 409 and r.json()["code"] == "not_settleable"
    stack.advance_to(owner, starts_at + timedelta(days=3))
    assert bea.post(f"/challenges/{cid}/settle").status_code == 403
    r = owner.post(f"/challenges/{cid}/settle")
    assert r.status_code == 200, r.text
    settled = r.json()
    assert settled["status"] == "settled" and settled["pool"] == 0
    assert settled["outcome"]["result"] == "paid_out"
    assert sorted(settled["outcome"]["finishers"]) == sorted([str(owner.id), str(bea.id)])
    assert owner.post(f"/challenges/{cid}/settle").json()["status"] == "settled"  # no-op

    # The views.
    stack.catch_up()
    people = {p["user_id"]: p for p in owner.get(f"/challenges/{cid}/participants").json()}
    assert people[str(owner.id)]["share"] == 165 and people[str(bea.id)]["share"] == 165
    assert people[str(cy.id)] | {"joined_at": None} == {
        "user_id": str(cy.id),
        "timezone": "UTC",
        "stake": 100,
        "penalties": 30,
        "joined_at": None,
        "expected": 2,
        "accepted": 1,
        "finished": False,
        "share": 0,
    }
    ledger = cy.get(f"/challenges/{cid}/ledger").json()
    assert ledger["pool"] == 0
    moves = [e["event_type"] for e in ledger["entries"]]
    assert moves.count("StakeLocked") == 3 and moves[-1] == "Settled" and "PenaltyCharged" in moves
    penalties = f"challenge:{cid}:penalties"
    assert {"account": penalties, "balance": 0} in ledger["accounts"]
    assert invited_only.get(f"/challenges/{cid}/ledger").status_code == 403
    assert outsider.get(f"/challenges/{cid}/ledger").status_code == 404
    balances = {p.id: stack.available(p) for p in (owner, bea, cy)}
    assert balances == {owner.id: 1_065, bea.id: 1_065, cy.id: 870}

    mine = owner.get("/challenges", params={"scope": "mine"}).json()["items"]
    assert [c["id"] for c in mine] == [cid] and mine[0]["outcome"] == "paid_out"
    assert [c["id"] for c in bea.get("/challenges?scope=joined").json()["items"]] == [cid]
    assert cid not in [c["id"] for c in outsider.get("/challenges").json()["items"]]


def test_public_listing_pages_newest_first_and_hides_drafts(stack: Stack) -> None:
    owner, reader = stack.user(5_000), stack.user(0)
    starts_at = next_midnight(stack.now())
    made = []
    for n in range(3):
        r = owner.post("/challenges", json=challenge_body(starts_at, name=f"Public {n}"))
        made.append(r.json()["id"])
        assert owner.post(f"/challenges/{made[-1]}/publish").status_code == 200
    owner.post("/challenges", json=challenge_body(starts_at, name="Still a draft"))
    unlisted = owner.post("/challenges", json=challenge_body(starts_at, visibility="unlisted"))
    owner.post(f"/challenges/{unlisted.json()['id']}/publish")
    stack.catch_up()

    page = reader.get("/challenges", params={"scope": "public", "limit": 2}).json()
    assert [c["id"] for c in page["items"]] == [made[2], made[1]]
    rest = reader.get("/challenges", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert rest["items"][0]["id"] == made[0]  # older public challenges of other tests follow
    assert reader.get(f"/challenges/{unlisted.json()['id']}").status_code == 200  # by link
    assert len(owner.get("/challenges", params={"scope": "mine"}).json()["items"]) == 5
    r = reader.get("/challenges", params={"cursor": "not-ours"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"


def test_cancelling_returns_every_stake_and_only_the_owner_or_an_admin_may(stack: Stack) -> None:
    owner, player, admin = stack.user(), stack.user(), stack.user(0, admin=True)
    starts_at = next_midnight(stack.now())
    for canceller in (owner, admin):
        cid = owner.post("/challenges", json=challenge_body(starts_at)).json()["id"]
        owner.post(f"/challenges/{cid}/publish")
        code = owner.get(f"/challenges/{cid}").json()["invite_code"]
        player.post("/challenges/join", json={"invite_code": code, "timezone": "UTC"})
        r = player.post(f"/challenges/{cid}/cancel", json={"reason": "mine now"})
        assert r.status_code == 403
        r = canceller.post(f"/challenges/{cid}/cancel", json={"reason": "rain"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["outcome"]["returned"] == 200
        assert owner.post(f"/challenges/{cid}/cancel").status_code == 409
    assert stack.available(player) == 1_000


def test_bad_challenges_are_refused_with_problem_details(stack: Stack) -> None:
    owner = stack.user(50)
    starts_at = next_midnight(stack.now())
    cases = [
        challenge_body(starts_at, name="ab"),
        challenge_body(starts_at, entry_stake=1.5),
        challenge_body(starts_at, entry_stake="100"),
        challenge_body(starts_at, ends_at=starts_at.isoformat()),
        challenge_body(starts_at, starts_at="2030-01-01T00:00:00"),  # naive
        challenge_body(starts_at, entry_stake=100_001),
        challenge_body(starts_at, allow_list=[str(uuid.uuid4())]),  # public with a list
        challenge_body(starts_at, rules={"proof_types": []}),
        challenge_body(starts_at, rules={"time_window": {"timezone": "Mars/Olympus"}}),
        challenge_body(starts_at, surprise=True),
    ]
    for body in cases:
        r = owner.post("/challenges", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    cid = owner.post("/challenges", json=challenge_body(starts_at)).json()["id"]
    r = owner.post(f"/challenges/{cid}/publish")
    assert r.status_code == 402 and r.json()["code"] == "insufficient_funds"
    assert owner.get(f"/challenges/{uuid.uuid4()}").status_code == 404
    assert stack.client.get(f"/v1/challenges/{cid}").status_code == 401


def test_challenge_dates_too_far_ahead_or_too_long_are_refused_before_anything_is_recorded(
    stack: Stack,
) -> None:
    owner = stack.user(50)
    starts_at = next_midnight(stack.now())
    cases = [
        challenge_body(datetime(9999, 12, 29, tzinfo=UTC)),
        challenge_body(next_midnight(stack.now(), days=400)),
        challenge_body(starts_at, ends_at=(starts_at + timedelta(days=367)).isoformat()),
    ]
    head = stack.services.ledger.head()
    for body in cases:
        r = owner.post("/challenges", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert stack.services.ledger.head() == head
