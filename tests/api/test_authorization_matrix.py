"""The authorization matrix: every route × {anonymous, user, other user, admin} → its status.

One world per module, built over HTTP (the ledger only funds wallets):

- ``user`` owns the resources in the paths: a private challenge (``peer`` is allow-listed and
  has joined), a public one (``peer`` has joined), a finished private one to settle, a
  private one not started yet (to join), a withdrawal and a Stripe checkout; ``peer``'s
  pending submission in each running challenge is what ``user`` (a participant) reviews;
- ``other`` is a signed-in user with a wallet of their own and no part in any of it;
- ``admin`` has the admin role (and a wallet);
- ``anonymous`` sends no ``Authorization`` header.

What rules §7 asks, row by row: no token → 401 except ops, sign-up/in, the Stripe webhook (400
without a signature) and the simulated-Stripe pages; another user's withdrawal, a private
challenge not shown to them, a draft → 404; a challenge they can see but take no part in →
403 on participant-only actions (ledger, submissions, proofs, votes); admin-only routes → 403
for users; an admin sees every challenge, may cancel and settle others', but is no
participant (403 on participant-only actions) and owns no one else's wallet (404).

Commands that change what later rows see (edit, publish, cancel, pay, decline, log out) act
on a fresh resource made for the row; the rest are repeatable.
``test_every_operation_has_a_row`` fails when a route is added without a row here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.bootstrap import Services
from domain.aggregate import Cause
from tests.api.conftest import PASSWORD, bearer
from tests.api.test_challenges import challenge_body, next_midnight

ACTORS = ("anonymous", "user", "other", "admin")

# Every operation of the API, as "METHOD /path" (listed without a database).
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, operations in create_app().openapi()["paths"].items()
    for method in operations
)


@dataclass
class Member:
    id: uuid.UUID
    email: str
    headers: dict[str, str]


@dataclass
class World:
    client: TestClient
    services: Services
    members: dict[str, Member] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def headers(self, actor: str) -> dict[str, str]:
        return {} if actor == "anonymous" else self.members[actor].headers

    @property
    def owner(self) -> dict[str, str]:
        return self.members["user"].headers

    def signup(self, name: str = "x") -> tuple[str, str]:
        """A new account's email and username (not signed in)."""
        tag = uuid.uuid4().hex[:10]
        email, username = f"{name}_{tag}@example.com", f"{name}_{tag}"
        body = {"email": email, "username": username, "password": PASSWORD}
        assert self.client.post("/v1/auth/register", json=body).status_code == 201
        return email, username

    def login(self, email: str) -> dict[str, Any]:
        r = self.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def member(self, name: str, *, admin: bool = False, tokens: int = 10_000) -> Member:
        email, _ = self.signup(name)
        if admin:
            assert self.services.users.set_role(email, "admin") is not None
        headers = bearer(self.login(email)["access_token"])
        user_id = uuid.UUID(self.client.get("/v1/auth/me", headers=headers).json()["id"])
        self.services.ledger.credit_deposit(
            user_id, f"pi_matrix_{uuid.uuid4().hex}", tokens, Cause.stripe("evt_matrix")
        )
        return Member(user_id, email, headers)

    def now(self) -> datetime:
        return self.services.clock.now()

    def challenge(self, starts_at: datetime, days: int, **overrides: Any) -> tuple[str, str]:
        """A draft of ``user``'s: its id and invite code."""
        body = challenge_body(starts_at, **overrides)
        body["ends_at"] = (starts_at + timedelta(days=days)).isoformat()
        r = self.client.post("/v1/challenges", json=body, headers=self.owner)
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["invite_code"]

    def draft(self) -> str:
        return self.challenge(next_midnight(self.now()), 2, visibility="private")[0]

    def checkout(self) -> str:
        body = {
            "tokens": 500,
            "success_url": "http://127.0.0.1:8000/ok",
            "cancel_url": "http://127.0.0.1:8000/cancel",
        }
        r = self.client.post("/v1/wallet/deposits", json=body, headers=self.owner)
        assert r.status_code == 201, r.text
        return str(r.json()["session_id"])

    def path(self, template: str, variant: str) -> str:
        """The path with the world's ids of this variant (``private`` or ``public``)."""
        ids = {
            "challenge_id": self.ids[f"{variant}_challenge"],
            "submission_id": self.ids[f"{variant}_submission"],
            "withdrawal_id": self.ids["withdrawal"],
            "session_id": self.ids["checkout"],
        }
        return template.format(**ids)


@pytest.fixture(scope="module")
def world(api_client: TestClient, api_services: Services) -> World:
    w = World(api_client, api_services)
    for name in ("user", "other", "peer"):
        w.members[name] = w.member(name)
    w.members["admin"] = w.member("admin", admin=True)
    user, peer = w.members["user"], w.members["peer"]

    starts_at = next_midnight(w.now())
    quorum = {
        "proof_types": ["text", "photo"],
        "time_window": {"scope": "challenge_tz"},
        "verification": {"mode": "quorum", "quorum_pct": 60},
    }
    # Two participants (the owner and ``peer``): with fewer, a settle cancels (rules §3).
    settleable, settleable_code = w.challenge(
        starts_at, 1, visibility="private", allow_list=[str(peer.id)], entry_stake=0
    )
    private, private_code = w.challenge(
        starts_at, 30, visibility="private", allow_list=[str(peer.id)], rules=quorum
    )
    public, public_code = w.challenge(starts_at, 30, visibility="public", rules=quorum)
    for cid in (settleable, private, public):
        r = api_client.post(f"/v1/challenges/{cid}/publish", headers=user.headers)
        assert r.status_code == 200, r.text
    for code in (settleable_code, private_code, public_code):
        body = {"invite_code": code, "timezone": "UTC"}
        r = api_client.post("/v1/challenges/join", json=body, headers=peer.headers)
        assert r.status_code == 201, r.text

    # Past the settleable challenge's settlement time, inside the other two's first days.
    settles_at = datetime.fromisoformat(
        api_client.get(f"/v1/challenges/{settleable}", headers=user.headers).json()["settles_at"]
    )
    seconds = int((settles_at - w.now()).total_seconds()) + 60
    r = api_client.post("/v1/test-clock/advance", json={"seconds": seconds}, headers=user.headers)
    assert r.status_code == 200, r.text

    # A private challenge still open for joining (the others have started).
    upcoming, upcoming_code = w.challenge(next_midnight(w.now()), 2, visibility="private")
    r = api_client.post(f"/v1/challenges/{upcoming}/publish", headers=user.headers)
    assert r.status_code == 200, r.text

    w.ids = {
        "settleable": settleable,
        "upcoming_code": upcoming_code,
        "private_challenge": private,
        "public_challenge": public,
    }
    for variant, cid in (("private", private), ("public", public)):
        r = api_client.post(
            f"/v1/challenges/{cid}/submissions",
            data={"proof_type": "text", "text": "30 push-ups"},
            headers=peer.headers,
        )
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        w.ids[f"{variant}_submission"] = r.json()["id"]
    r = api_client.post("/v1/wallet/withdrawals", json={"tokens": 1}, headers=user.headers)
    assert r.status_code == 202, r.text
    w.ids["withdrawal"] = r.json()["withdrawal_id"]
    w.ids["checkout"] = w.checkout()
    api_services.projector.catch_up()  # workers are off: bring the read models up to date
    return w


# -- the matrix ---------------------------------------------------------------------------

Send = Callable[[World, str, dict[str, str]], httpx.Response]


@dataclass(frozen=True)
class Row:
    operation: str  # "METHOD /v1/path", exactly as in the OpenAPI
    expect: tuple[int, int, int, int]  # anonymous, user, other, admin
    variant: str = ""  # whose ids fill the path: the "private" (default) or "public" challenge
    send: Send | None = None  # how to call it, when a plain request will not do
    json: Any = None

    def call(self, w: World, actor: str) -> httpx.Response:
        headers = w.headers(actor)
        if self.send is not None:
            return self.send(w, actor, headers)
        method, template = self.operation.split(" ", 1)
        path = w.path(template, self.variant or "private")
        return w.client.request(method, path, headers=headers, json=self.json)


def fresh_draft(method: str, suffix: str, json: Any = None) -> Send:
    """The request on a new draft of ``user``'s (the command changes it)."""

    def send(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
        return w.client.request(
            method, f"/v1/challenges/{w.draft()}{suffix}", headers=headers, json=json
        )

    return send


def on_settleable(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    return w.client.post(f"/v1/challenges/{w.ids['settleable']}/settle", headers=headers)


def fresh_checkout(action: str) -> Send:
    def send(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
        path = f"/v1/simulated-stripe/checkout/{w.checkout()}/{action}"
        return w.client.post(path, headers=headers, follow_redirects=False)

    return send


def submit_text(w: World, actor: str, headers: dict[str, str], variant: str) -> httpx.Response:
    return w.client.post(
        f"/v1/challenges/{w.ids[f'{variant}_challenge']}/submissions",
        data={"proof_type": "text", "text": f"proof by {actor}"},
        headers=headers,
    )


def register(w: World, actor: str, headers: dict[str, str]) -> httpx.Response:
    tag = uuid.uuid4().hex[:10]
    body = {"email": f"r_{tag}@example.com", "username": f"r_{tag}", "password": PASSWORD}
    return w.client.post("/v1/auth/register", json=body, headers=headers)


def login(w: World, actor: str, headers: dict[str, str]) -> httpx.Response:
    email, _ = w.signup("login")
    body = {"email": email, "password": PASSWORD}
    return w.client.post("/v1/auth/login", json=body, headers=headers)


def with_refresh_token(path: str) -> Send:
    """``path`` with the refresh token of a session made for the row (never the actor's)."""

    def send(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
        token = w.login(w.signup("session")[0])["refresh_token"]
        return w.client.post(path, json={"refresh_token": token}, headers=headers)

    return send


def adjust(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    body = {
        "user_id": str(w.members["user"].id),
        "direction": "credit",
        "tokens": 1,
        "reason": "goodwill",
    }
    return w.client.post("/v1/admin/adjustments", json=body, headers=headers)


def join_upcoming(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    body = {"invite_code": w.ids["upcoming_code"], "timezone": "UTC"}
    return w.client.post("/v1/challenges/join", json=body, headers=headers)


def create_challenge(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    body = challenge_body(next_midnight(w.now()))
    return w.client.post("/v1/challenges", json=body, headers=headers)


def erase_fresh_user(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    """The admin erasure of a new account with no wallet (erasable; never one of the world's)."""
    email, _ = w.signup("erasable")
    me = w.client.get("/v1/auth/me", headers=bearer(w.login(email)["access_token"]))
    return w.client.post(f"/v1/admin/users/{me.json()['id']}/erase", headers=headers)


def webhook(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    return w.client.post("/v1/stripe/webhook", json={"id": "evt_unsigned"}, headers=headers)


def connect_webhook(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    return w.client.post("/v1/stripe/connect-webhook", json={"id": "evt_unsigned"}, headers=headers)


def someone_elses_cashout(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
    return w.client.get(f"/v1/wallet/cashouts/{uuid.uuid4()}", headers=headers)


def simulated_onboarding(action: str) -> Send:
    def send(w: World, _: str, headers: dict[str, str]) -> httpx.Response:
        path = f"/v1/simulated-stripe/connect/acct_sim_{uuid.uuid4().hex[:16]}{action}"
        if action:
            return w.client.post(path, headers=headers, follow_redirects=False)
        return w.client.get(path, headers=headers)

    return send


CHALLENGE = "/v1/challenges/{challenge_id}"
SUBMISSION = "/v1/submissions/{submission_id}"
DEPOSIT = {
    "tokens": 100,
    "success_url": "http://127.0.0.1:8000/ok",
    "cancel_url": "http://127.0.0.1:8000/no",
}

ROWS: list[Row] = [
    # Operations: open to all.
    Row("GET /v1/health", (200, 200, 200, 200)),
    Row("GET /v1/ready", (200, 200, 200, 200)),
    Row("GET /v1/metrics", (200, 200, 200, 200)),
    Row("GET /v1/version", (200, 200, 200, 200)),
    # Accounts: sign-up and sign-in need no token; the rest do.
    Row("POST /v1/auth/register", (201, 201, 201, 201), send=register),
    Row("POST /v1/auth/login", (200, 200, 200, 200), send=login),
    Row("POST /v1/auth/refresh", (200, 200, 200, 200), send=with_refresh_token("/v1/auth/refresh")),
    Row("POST /v1/auth/logout", (204, 204, 204, 204), send=with_refresh_token("/v1/auth/logout")),
    Row("GET /v1/auth/me", (401, 200, 200, 200)),
    # Erasing oneself: every member's wallet holds tokens, so it is refused (and repeatable).
    Row("DELETE /v1/auth/me", (401, 409, 409, 409), json={"password": PASSWORD}),
    # The caller's own wallet: every signed-in user has one; another's withdrawal is a 404.
    Row("GET /v1/wallet", (401, 200, 200, 200)),
    Row("GET /v1/wallet/lots", (401, 200, 200, 200)),
    Row("GET /v1/wallet/transactions", (401, 200, 200, 200)),
    Row("POST /v1/wallet/withdrawals", (401, 202, 202, 202), json={"tokens": 1}),
    Row("GET /v1/wallet/withdrawals/{withdrawal_id}", (401, 200, 404, 404)),
    Row("POST /v1/wallet/deposits", (401, 201, 201, 201), json=DEPOSIT),
    # Cash-outs: nobody here has an enabled payout account (409); a cash-out id not one's
    # own is a 404.
    Row("POST /v1/wallet/cashouts", (401, 409, 409, 409), json={"tokens": 1_000}),
    Row("GET /v1/wallet/cashouts/{cashout_id}", (401, 404, 404, 404), send=someone_elses_cashout),
    Row("GET /v1/payout-account", (401, 200, 200, 200)),
    Row("POST /v1/payout-account", (401, 200, 200, 200)),
    # Stripe: the signature is the authentication; the checkout page is the payer's browser's.
    Row("POST /v1/stripe/webhook", (400, 400, 400, 400), send=webhook),
    Row("POST /v1/stripe/connect-webhook", (400, 400, 400, 400), send=connect_webhook),
    Row(
        "GET /v1/simulated-stripe/connect/{account_id}",
        (200, 200, 200, 200),
        send=simulated_onboarding(""),
    ),
    Row(
        "POST /v1/simulated-stripe/connect/{account_id}/complete",
        (303, 303, 303, 303),
        send=simulated_onboarding("/complete"),
    ),
    Row("GET /v1/simulated-stripe/checkout/{session_id}", (200, 200, 200, 200)),
    Row(
        "POST /v1/simulated-stripe/checkout/{session_id}/pay",
        (303, 303, 303, 303),
        send=fresh_checkout("pay"),
    ),
    Row(
        "POST /v1/simulated-stripe/checkout/{session_id}/decline",
        (303, 303, 303, 303),
        send=fresh_checkout("decline"),
    ),
    # Admin only.
    Row("GET /v1/platform/revenue", (401, 403, 403, 200)),
    Row("GET /v1/platform/journal", (401, 403, 403, 200)),
    Row("POST /v1/admin/adjustments", (401, 403, 403, 201), send=adjust),
    Row("GET /v1/audit/events", (401, 403, 403, 200)),
    Row("POST /v1/admin/users/{user_id}/erase", (401, 403, 403, 200), send=erase_fresh_user),
    # The test clock: any signed-in user (embedded default only).
    Row("GET /v1/test-clock", (401, 200, 200, 200)),
    Row("POST /v1/test-clock/advance", (401, 200, 200, 200), json={"seconds": 1}),
    # Challenges: lists and joining.
    Row("POST /v1/challenges", (401, 201, 201, 201), send=create_challenge),
    Row("GET /v1/challenges", (401, 200, 200, 200)),
    # A private challenge's code, to the uninvited, is like no code at all (404).
    Row("POST /v1/challenges/join", (401, 200, 404, 404), send=join_upcoming),
    Row("GET /v1/reviews", (401, 200, 200, 200)),
    # A draft: its owner's alone (404 to others); an admin sees it, may cancel, not edit.
    Row(
        f"PATCH {CHALLENGE}",
        (401, 200, 404, 403),
        send=fresh_draft("PATCH", "", {"name": "Renamed"}),
    ),
    Row(f"POST {CHALLENGE}/publish", (401, 200, 404, 403), send=fresh_draft("POST", "/publish")),
    Row(
        f"POST {CHALLENGE}/cancel",
        (401, 200, 404, 200),
        send=fresh_draft("POST", "/cancel", {"reason": "changed my mind"}),
    ),
    # A private challenge past its settlement time: owner or admin settle it.
    Row(f"POST {CHALLENGE}/settle", (401, 200, 404, 200), send=on_settleable),
    # A running private challenge ``other`` is not allowed into: it does not exist for them.
    Row(f"GET {CHALLENGE}", (401, 200, 404, 200), "private"),
    Row(f"GET {CHALLENGE}/participants", (401, 200, 404, 200), "private"),
    Row(f"GET {CHALLENGE}/ledger", (401, 200, 404, 403), "private"),
    Row(f"GET {CHALLENGE}/submissions", (401, 200, 404, 403), "private"),
    Row(
        f"POST {CHALLENGE}/submissions",
        (401, 201, 404, 403),
        "private",
        send=lambda w, a, h: submit_text(w, a, h, "private"),
    ),
    Row(f"GET {SUBMISSION}", (401, 200, 404, 403), "private"),
    Row(f"GET {SUBMISSION}/proof", (401, 200, 404, 403), "private"),
    Row(f"POST {SUBMISSION}/votes", (401, 201, 404, 403), "private", json={"approve": True}),
    # A running public challenge: ``other`` sees it, but takes no part (403).
    Row(f"GET {CHALLENGE}", (401, 200, 200, 200), "public"),
    Row(f"GET {CHALLENGE}/participants", (401, 200, 200, 200), "public"),
    Row(f"GET {CHALLENGE}/ledger", (401, 200, 403, 403), "public"),
    Row(f"GET {CHALLENGE}/submissions", (401, 200, 403, 403), "public"),
    Row(
        f"POST {CHALLENGE}/submissions",
        (401, 201, 403, 403),
        "public",
        send=lambda w, a, h: submit_text(w, a, h, "public"),
    ),
    Row(f"GET {SUBMISSION}", (401, 200, 403, 403), "public"),
    Row(f"GET {SUBMISSION}/proof", (401, 200, 403, 403), "public"),
    Row(f"POST {SUBMISSION}/votes", (401, 201, 403, 403), "public", json={"approve": True}),
]


def case_id(row: Row, actor: str) -> str:
    where = f" ({row.variant})" if row.variant else ""
    return f"{row.operation}{where} as {actor}"


CASES = [
    pytest.param(row, actor, expected, id=case_id(row, actor))
    for row in ROWS
    for actor, expected in zip(ACTORS, row.expect, strict=True)
]


def test_every_operation_has_a_row() -> None:
    covered = {row.operation for row in ROWS}
    assert sorted(set(OPERATIONS) - covered) == [], "routes without a row in the matrix"
    assert sorted(covered - set(OPERATIONS)) == [], "rows for routes that do not exist"


@pytest.mark.parametrize(("row", "actor", "expected"), CASES)
def test_authorization(world: World, row: Row, actor: str, expected: int) -> None:
    r = row.call(world, actor)
    assert r.status_code == expected, r.text
    if r.status_code in (401, 403, 404):
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == r.status_code
    if r.status_code == 401:
        assert r.headers["www-authenticate"] == "Bearer"
