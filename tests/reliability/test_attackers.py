"""Attackers (rules §7), over HTTP through the full stack, for what ``tests/api`` does not
already show. What is covered there and not repeated here: the authorization matrix (every
route × anonymous, owner, other user, participant, admin: horizontal access 404, vertical 403,
``tests/api/test_authorization_matrix.py``), expired, tampered, wrong-key, wrong-type and
claim-less tokens and refresh-token reuse (``test_auth.py``), rate limits (``test_auth_rate_
limits.py``, ``test_login_lockout.py``, ``test_client_address.py``), forged, altered and stale
webhooks (``test_deposits.py``) and audit verify after erasure (``test_erasure.py``).

Here: the JWT header games (algorithm confusion, ``none`` with well-formed claims, a token not
valid yet, key-id and key-URL headers), a stolen refresh token raced against its owner, a
brute force that rotates its claimed address, an ``Idempotency-Key`` replayed by another user
to read their response, the development-only routes asked for in production, and the stream
scanned for personal data after a whole journey and an erasure.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Services
from domain.aggregate import Cause
from tests.api.conftest import PASSWORD, TEST_JWT_SECRET, Account, bearer
from tests.api.test_challenges import challenge_body, next_midnight
from tests.reliability.recorder import Recorder

AREA = "attackers"
URLS = {"success_url": "http://127.0.0.1:8000/ok", "cancel_url": "http://127.0.0.1:8000/no"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(account: Account, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(account.access_token, options={"verify_signature": False})
    claims.update(changes)
    return claims


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature))
    )


def forged_tokens(account: Account, admin_claims: dict[str, Any]) -> dict[str, str]:
    """Every header game we know, each on otherwise valid claims (some promoted to admin)."""
    now = datetime.now(UTC)
    mine = claims_of(account)
    return {
        "alg none, no signature": raw_token({"alg": "none", "typ": "JWT"}, mine, b""),
        "alg None spelled otherwise": raw_token({"alg": "None"}, admin_claims, b""),
        "alg HS512 with our key": jwt.encode(mine, TEST_JWT_SECRET, algorithm="HS512"),
        "alg HS384 promoted to admin": jwt.encode(admin_claims, TEST_JWT_SECRET, "HS384"),
        # RS256 with the HMAC secret as the "public key": the classic confusion attack.
        "alg RS256 header, HMAC body": raw_token(
            {"alg": "RS256", "typ": "JWT"},
            admin_claims,
            jwt.encode(admin_claims, TEST_JWT_SECRET, "HS256").split(".")[2].encode(),
        ),
        "not valid before an hour from now": jwt.encode(
            {**mine, "nbf": int((now + timedelta(hours=1)).timestamp())}, TEST_JWT_SECRET
        ),
        "issued an hour from now": jwt.encode(
            {**mine, "iat": int((now + timedelta(hours=1)).timestamp())}, TEST_JWT_SECRET
        ),
        "another issuer": jwt.encode({**mine, "iss": "someone-else"}, TEST_JWT_SECRET),
        "a key id pointing elsewhere": jwt.encode(
            admin_claims, "attacker-key-attacker-key-attacker", headers={"kid": "../../dev/null"}
        ),
        "a key URL of the attacker's": jwt.encode(
            admin_claims,
            "attacker-key-attacker-key-attacker",
            headers={"jku": "http://127.0.0.1:9/keys.json"},
        ),
        "role claim flipped, signature kept": ".".join(
            (
                account.access_token.split(".")[0],
                b64(json.dumps(admin_claims).encode()),
                account.access_token.split(".")[2],
            )
        ),
        "years to live": jwt.encode(
            {**mine, "exp": int((now + timedelta(days=3650)).timestamp()), "role": "admin"},
            "wrong-key-wrong-key-wrong-key-wrong-key",
        ),
    }


def test_no_forged_token_is_accepted_anywhere(
    api_client: TestClient, register_user: Callable[..., Account], reliability: Recorder
) -> None:
    account = register_user()
    admin_claims = claims_of(account, role="admin")
    for name, token in forged_tokens(account, admin_claims).items():
        for path in ("/v1/auth/me", "/v1/wallet", "/v1/platform/revenue"):
            response = api_client.get(path, headers=bearer(token))
            assert response.status_code == 401, (name, path, response.text)
            assert response.json()["code"] == "invalid_token", (name, response.text)
        reliability.add(AREA, attacks=1, requests=3)
    assert api_client.get("/v1/auth/me", headers=account.headers).status_code == 200


def test_a_stolen_refresh_token_used_after_its_owner_refreshed_ends_both_sessions(
    api_client: TestClient, register_user: Callable[..., Account], reliability: Recorder
) -> None:
    victim = register_user()
    stolen = victim.refresh_token
    rotated = api_client.post("/v1/auth/refresh", json={"refresh_token": stolen})
    assert rotated.status_code == 200, rotated.text
    victims_new = rotated.json()

    thief = api_client.post("/v1/auth/refresh", json={"refresh_token": stolen})

    assert thief.status_code == 401
    # The reuse revoked the family: the owner's newer refresh token no longer works either,
    # so whoever holds a copy must sign in again with the password.
    again = api_client.post(
        "/v1/auth/refresh", json={"refresh_token": victims_new["refresh_token"]}
    )
    assert again.status_code == 401
    reliability.add(AREA, attacks=1, requests=3)


def test_a_brute_force_that_claims_new_addresses_is_still_stopped(
    api_client: TestClient,
    register_user: Callable[..., Account],
    rate_limits_on: None,
    reliability: Recorder,
) -> None:
    """The test client is not a trusted proxy, so its X-Forwarded-For picks no bucket."""
    victim = register_user()
    statuses = []
    for n in range(30):
        guess = {"email": victim.email, "password": f"guess-{n:04d}-{uuid.uuid4().hex[:6]}"}
        spoofed = {"X-Forwarded-For": f"198.51.100.{n}"}
        statuses.append(api_client.post("/v1/auth/login", json=guess, headers=spoofed).status_code)
    assert statuses.count(401) <= 5, statuses
    assert statuses[-1] == 429
    right = {"email": victim.email, "password": PASSWORD}
    still = api_client.post("/v1/auth/login", json=right, headers={"X-Forwarded-For": "192.0.2.1"})
    assert still.status_code == 429 and "Retry-After" in still.headers
    reliability.add(AREA, attacks=31, requests=31)


def test_another_users_idempotency_key_runs_their_own_command_and_reveals_nothing(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    reliability: Recorder,
) -> None:
    victim, attacker = register_user(), register_user()
    for who in (victim, attacker):
        api_services.ledger.credit_deposit(
            who.id, f"pi_{uuid.uuid4().hex}", 500, Cause.stripe(f"evt_{uuid.uuid4().hex}")
        )
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
    body = {"tokens": 5}
    first = api_client.post("/v1/wallet/withdrawals", json=body, headers={**victim.headers, **key})
    assert first.status_code == 202, first.text

    stolen = api_client.post(
        "/v1/wallet/withdrawals", json=body, headers={**attacker.headers, **key}
    )
    other_body = api_client.post(
        "/v1/wallet/deposits", json={"tokens": 100, **URLS}, headers={**attacker.headers, **key}
    )

    assert stolen.status_code == 202, stolen.text
    assert stolen.json()["withdrawal_id"] != first.json()["withdrawal_id"]
    assert str(victim.id) not in stolen.text and str(victim.id) not in other_body.text
    assert other_body.status_code == 201, other_body.text  # another route: another key space
    api_services.projector.catch_up()
    mine = api_client.get("/v1/wallet", headers=attacker.headers).json()
    theirs = api_client.get("/v1/wallet", headers=victim.headers).json()
    assert mine["withdrawal_pending"] == 5 and theirs["withdrawal_pending"] == 5
    reliability.add(AREA, attacks=2, requests=3)


@pytest.fixture
def production(api_services: Services) -> Iterator[None]:
    """The same app answering as with ENV=production (its config is read per request)."""
    development = api_services.config
    api_services.config = development.model_copy(update={"env": "production"})
    try:
        yield
    finally:
        api_services.config = development


def test_the_test_clock_and_simulated_stripe_do_not_exist_in_production(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    reliability: Recorder,
) -> None:
    user = register_user()
    checkout = api_client.post(
        "/v1/wallet/deposits", json={"tokens": 100, **URLS}, headers=user.headers
    )
    account = api_client.post("/v1/payout-account", headers=user.headers)
    assert checkout.status_code == 201 and account.status_code in (200, 201), account.text
    ids = {
        "session_id": checkout.json()["session_id"],
        "account_id": account.json()["account_id"],
    }
    paths = api_client.get("/openapi.json").json()["paths"]
    development_only = [
        (method.upper(), path.format(**ids))
        for path, operations in paths.items()
        if "simulated" in path or "test-clock/advance" in path
        for method in operations
    ]
    assert len(development_only) >= 4, development_only
    before = api_services.clock.now()

    development = api_services.config
    api_services.config = development.model_copy(update={"env": "production"})
    try:
        answers = {
            (method, path): api_client.request(
                method, path, headers=user.headers, json={"seconds": 3600}
            )
            for method, path in development_only
        }
    finally:
        api_services.config = development

    for (method, path), response in answers.items():
        assert response.status_code == 404, (method, path, response.text)
    assert api_services.clock.now() - before < timedelta(minutes=5)  # the clock did not move
    api_services.projector.catch_up()
    wallet = api_client.get("/v1/wallet", headers=user.headers).json()
    assert wallet["deposited"] == 0  # the simulated payment page paid nothing
    reliability.add(AREA, attacks=len(answers), requests=len(answers))


def test_no_event_holds_personal_data_even_after_a_journey_and_an_erasure(
    api_client: TestClient,
    api_services: Services,
    register_user: Callable[..., Account],
    admin_token: str,
    reliability: Recorder,
) -> None:
    tag = uuid.uuid4().hex[:10]
    people = [
        register_user(f"Marie.Curie+{tag}@Example.org", username=f"mcurie_{tag}"),
        register_user(f"ada_{tag}@example.net", username=f"lovelace_{tag}"),
    ]
    for person in people:
        checkout = api_client.post(
            "/v1/wallet/deposits", json={"tokens": 300, **URLS}, headers=person.headers
        )
        assert checkout.status_code == 201, checkout.text
        paid = api_client.post(
            f"/v1/simulated-stripe/checkout/{checkout.json()['session_id']}/pay",
            follow_redirects=False,
        )
        assert paid.status_code == 303, paid.text
        withdrawn = api_client.post(
            "/v1/wallet/withdrawals", json={"tokens": 300}, headers=person.headers
        )
        assert withdrawn.status_code == 202, withdrawn.text
    # One more person, who takes part, then erases their personal data (rules §7).
    leaver = register_user(f"leaver_{tag}@example.com", username=f"leaver_{tag}")
    people.append(leaver)
    secrets = set()
    for person in people:
        record = api_services.users.by_email(person.email)
        assert record is not None
        secrets |= {person.email, person.email.lower(), person.username, person.password}
        if record.password_hash:
            secrets.add(record.password_hash)
    drafted = api_client.post(
        "/v1/challenges",
        json=challenge_body(next_midnight(api_services.clock.now())),
        headers=leaver.headers,
    )
    assert drafted.status_code == 201, drafted.text
    erased = api_client.request(
        "DELETE", "/v1/auth/me", json={"password": PASSWORD}, headers=leaver.headers
    )
    assert erased.status_code in (200, 204), erased.text

    recorder = api_services.ledger.recorder
    stored = recorder.select_notifications(1, 1_000_000)
    assert stored, "the journey recorded no events"
    mapper = api_services.ledger.mapper
    scanned = 0
    for notification in stored:
        text = notification.state.decode("utf-8", "replace") + notification.topic
        decoded = repr(mapper.to_domain_event(notification).__dict__)
        for secret in secrets:
            assert secret.lower() not in text.lower(), (secret, notification.topic)
            assert secret.lower() not in decoded.lower(), (secret, notification.topic)
        scanned += 1
    reliability.add(AREA, attacks=1, checks=scanned * len(secrets))
