"""Hostile input (rules §1, §3, §4, §7): whatever a client sends, the answer is a clear 4xx
problem and nothing is recorded, neither an event nor a user.

Each field a client fills (amounts, dates, timezones, invite codes, usernames, emails, query
parameters, multipart parts) gets two kinds of bad values:

- hand-picked ones that broke systems before: ``NaN``, ``Infinity``, ``1e309``, ``"1"``,
  ``true``, ``-0``, 2^53 + 1, 2^63, a fraction, ``null``, arrays, objects, a 60,000-character
  string, NUL bytes, lone surrogates, right-to-left overrides, naive and impossible dates, path
  traversal; raw bodies that are not UTF-8, not JSON or nested 20,000 levels deep;
- values hypothesis generates from types a field must refuse.

Photos: a zip bomb, a gzip bomb, SVG with script, HTML, PDF, GIF, ELF, an empty file, each
with a traversing file name, are refused; a real PNG whose file name climbs out of the storage
directory is stored under the server's own key, inside it. Bodies over the limit (413 before
they are read whole) are in ``tests/api/test_http_hardening.py``; schemathesis over every
operation in ``tests/api/test_schemathesis.py`` (``SCHEMATHESIS_MAX_EXAMPLES`` scales both).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.persistence import DatabaseSettings
from api.app import create_app
from api.bootstrap import Services, build_services
from domain.aggregate import Cause
from tests.api.conftest import api_config
from tests.api.test_challenges import challenge_body, next_midnight
from tests.reliability.conftest import knob
from tests.reliability.recorder import Recorder

AREA = "hostile input"
EXAMPLES = knob("RELIABILITY_EXAMPLES")
URLS = {"success_url": "http://127.0.0.1:8000/ok", "cancel_url": "http://127.0.0.1:8000/no"}
HUGE = "x" * 60_000
JSON = {"Content-Type": "application/json"}

NUMBERS_THAT_ARE_NOT_AMOUNTS: list[Any] = [
    0, -1, -0.0, 1.5, 1e309, -1e309, 2**53 + 1, 2**63, 2**64, -(2**63), "1", "", "NaN",
    True, False, None, [], [1], {}, {"$gt": 0}, HUGE, "1\u0000", "١٢", "\ud800",
]  # fmt: skip
RAW_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-0", b"0x10", b"1_000", b"01"]
TEXT_THAT_IS_NOT_A_NAME: list[Any] = [
    "", "ab", HUGE, "a\u0000b", "ab\u202ecd", "\ud800\udfff", "../../etc/passwd", "..\\..\\x",
    "Robert'); DROP TABLE users;--", "UPPER", "with space", "é" * 5, None, 1, True, [], {},
]  # fmt: skip
NOT_DATES: list[Any] = [
    "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+25:00",
    "2026-01-01T24:00:01Z", "0000-01-01T00:00:00Z", "99999-01-01T00:00:00Z", "tomorrow",
    "2026-01-01T00:00:00", "1e309", 1e309, 1_700_000_000, True, None, "", HUGE, "\u0000",
]  # fmt: skip
NOT_TIMEZONES: list[Any] = [
    "", "Mars/Olympus", "../../../etc/localtime", "/etc/localtime", "UTC\u0000", "utc ",
    "Europe/../../etc/passwd", "+25:00", HUGE, None, 0, True, [], "Etc/GMT+99",
]  # fmt: skip
NOT_INVITE_CODES: list[Any] = [
    "", "abcdef", "ABCDE", "ABCDEFG", "ABC\u0000EF", "ÀBCDEF", " ABCDE", HUGE, None, 1, [],
    "%2e%2e%2f", "../../", "' OR 1=1",
]  # fmt: skip

not_an_amount = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=2**53 + 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
ZONES = available_timezones()
not_a_zone = st.text(max_size=40).filter(lambda z: z not in ZONES)
not_a_username = st.text(max_size=40).filter(
    lambda u: (
        not (3 <= len(u) <= 20 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in u))
    )
)


# -- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_services(
    api_db: DatabaseSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """This module's services: no rate limits, no workers, no waiting for read models."""
    storage = tmp_path_factory.mktemp("proofs") / "store"
    config = api_config(storage, read_wait_seconds=0.01)
    services = build_services(config, db=api_db)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def client(api_services: Services) -> Iterator[TestClient]:
    with TestClient(
        create_app(api_services, start_workers=False), raise_server_exceptions=False
    ) as c:
        yield c


class Nothing:
    """Asserts that a block recorded nothing: no event, no user, no stored file."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def users(self) -> int:
        db = self.services.db
        with psycopg.connect(db.url) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{db.schema}".users').fetchone()
        assert row is not None
        return int(row[0])

    def files(self) -> int:
        root = Path(self.services.config.storage_dir).parent
        return sum(1 for p in root.rglob("*") if p.is_file())

    def state(self) -> tuple[int, int, int]:
        return self.services.ledger.head(), self.users(), self.files()


def refused(response: Any, what: object) -> None:
    """A clear client error: 4xx, problem+json, no internals."""
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert "Traceback" not in response.text and "psycopg" not in response.text, what


@pytest.fixture(scope="module")
def member(client: TestClient, api_services: Services) -> dict[str, Any]:
    """A user with 10,000 tokens and a challenge of theirs, running, open to photos."""
    tag = uuid.uuid4().hex[:10]
    body = {"email": f"h_{tag}@example.com", "username": f"h_{tag}", "password": "pw-" + tag * 2}
    created = client.post("/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    login = client.post(
        "/v1/auth/login", json={"email": body["email"], "password": body["password"]}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    user_id = uuid.UUID(created.json()["id"])
    api_services.ledger.credit_deposit(user_id, f"pi_{tag}", 10_000, Cause.stripe(f"evt_{tag}"))
    starts = next_midnight(api_services.clock.now())
    drafted = client.post("/v1/challenges", json=challenge_body(starts), headers=headers)
    assert drafted.status_code == 201, drafted.text
    challenge_id = drafted.json()["id"]
    assert client.post(f"/v1/challenges/{challenge_id}/publish", headers=headers).is_success
    seconds = int((starts - api_services.clock.now()).total_seconds()) + 3600
    moved = client.post("/v1/test-clock/advance", json={"seconds": seconds}, headers=headers)
    assert moved.is_success, moved.text
    return {"headers": headers, "challenge_id": challenge_id, "id": user_id}


# -- JSON fields -------------------------------------------------------------------------------


def amount_routes(member: dict[str, Any]) -> list[tuple[str, Callable[[Any], dict[str, Any]]]]:
    return [
        ("/v1/wallet/withdrawals", lambda v: {"tokens": v}),
        ("/v1/wallet/deposits", lambda v: {"tokens": v, **URLS}),
        ("/v1/wallet/cashouts", lambda v: {"tokens": v}),
        ("/v1/test-clock/advance", lambda v: {"seconds": v}),
    ]


def send(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    """POST ``body`` as JSON the way a careless client writes it: NaN and Infinity included,
    lone surrogates escaped."""
    content = json.dumps(body).encode()
    return client.post(path, content=content, headers={**headers, **JSON})


def test_hand_picked_bad_values_in_every_field_are_refused_and_record_nothing(
    client: TestClient, api_services: Services, member: dict[str, Any], reliability: Recorder
) -> None:
    headers = member["headers"]
    nothing = Nothing(api_services)
    before = nothing.state()
    starts = next_midnight(api_services.clock.now())
    tried = 0
    cases: list[tuple[str, Any]] = []
    for path, make in amount_routes(member):
        cases += [(path, make(v)) for v in NUMBERS_THAT_ARE_NOT_AMOUNTS]
    for field in ("entry_stake", "max_participants"):
        cases += [
            ("/v1/challenges", challenge_body(starts, **{field: v}))
            for v in NUMBERS_THAT_ARE_NOT_AMOUNTS
            if not (field == "entry_stake" and v == 0)  # a free challenge is allowed
        ]
    cases += [
        ("/v1/challenges", challenge_body(starts, name=v))
        for v in TEXT_THAT_IS_NOT_A_NAME
        if not (isinstance(v, str) and 3 <= len(v) <= 120 and "\x00" not in v)
        or v == "\ud800\udfff"  # a surrogate pair spelt as two lone halves
    ]
    for field in ("starts_at", "ends_at"):
        cases += [("/v1/challenges", challenge_body(starts, **{field: v})) for v in NOT_DATES]
    for v in NOT_TIMEZONES:
        body = challenge_body(starts)
        body["rules"]["time_window"]["timezone"] = v
        cases.append(("/v1/challenges", body))
        cases.append(("/v1/challenges/join", {"invite_code": "ABCDEF", "timezone": v}))
    cases += [
        ("/v1/challenges/join", {"invite_code": v, "timezone": "UTC"}) for v in NOT_INVITE_CODES
    ]
    for response_path, body in cases:
        response = send(client, response_path, body, headers)
        refused(response, (response_path, str(body)[:200]))
        tried += 1
    for v in TEXT_THAT_IS_NOT_A_NAME:
        tag = uuid.uuid4().hex[:8]
        for body in (
            {"email": f"r_{tag}@example.com", "username": v, "password": "long enough pw"},
            {"email": v, "username": f"r_{tag}", "password": "long enough pw"},
            {"email": f"r2_{tag}@example.com", "username": f"r2_{tag}", "password": v},
        ):
            password = body["password"]
            if isinstance(password, str) and 8 <= len(password) <= 128 and "\x00" not in password:
                continue  # a long enough password of any characters is a password
            response = send(client, "/v1/auth/register", body, {})
            refused(response, body)
            tried += 1
    assert nothing.state() == before
    reliability.add(AREA, inputs=tried, requests=tried)


def test_raw_bodies_that_are_not_json_numbers_utf8_or_sane_are_refused(
    client: TestClient, api_services: Services, member: dict[str, Any], reliability: Recorder
) -> None:
    headers = {**member["headers"], "Content-Type": "application/json"}
    nothing = Nothing(api_services)
    before = nothing.state()
    bodies = [b'{"tokens": ' + raw + b"}" for raw in RAW_NUMBERS]
    bodies += [
        b'{"tokens": "\xff\xfe"}',
        b"\xff\xfe\x00{",
        b'{"tokens": 5',
        b'{"tokens": 5, "tokens": 6}x',
        b"[" * 20_000 + b"]" * 20_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"",
        b"null",
        b'"tokens"',
        b"\x00" * 100,
    ]
    tried = 0
    for path in ("/v1/wallet/withdrawals", "/v1/wallet/deposits", "/v1/challenges",
                 "/v1/challenges/join", "/v1/auth/register", "/v1/auth/login"):  # fmt: skip
        for body in bodies:
            response = client.post(path, content=body, headers=headers)
            refused(response, (path, body[:40]))
            tried += 1
    assert nothing.state() == before
    reliability.add(AREA, inputs=tried, requests=tried)


def test_hostile_query_parameters_never_fail_the_server(
    client: TestClient, member: dict[str, Any], reliability: Recorder
) -> None:
    headers = member["headers"]
    values = ["NaN", "1e309", "-1", "-0", str(2**63), "true", "", "%00", "\x00", HUGE[:4000],
              "2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "../..", "\u202e", "%ff"]  # fmt: skip
    paths = client.get("/openapi.json").json()["paths"]
    tried = 0
    for path, operations in paths.items():
        if "{" in path or "get" not in operations:
            continue
        names = [p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"]
        for name in names:
            for value in values:
                response = client.get(path, params={name: value}, headers=headers)
                assert response.status_code < 500 or response.status_code == 503, (
                    path,
                    name,
                    value,
                    response.text[:200],
                )
                tried += 1
    reliability.add(AREA, inputs=tried, requests=tried)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(value=not_an_amount, route=st.integers(0, 3))
def test_generated_amounts_are_refused_and_record_nothing(
    client: TestClient, api_services: Services, member: dict[str, Any], reliability: Recorder,
    value: Any, route: int,
) -> None:  # fmt: skip
    path, make = amount_routes(member)[route]
    before = api_services.ledger.head()
    refused(send(client, path, make(value), member["headers"]), (path, value))
    assert api_services.ledger.head() == before
    reliability.add(AREA, inputs=1, requests=1)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(zone=not_a_zone, code=st.text(max_size=12), username=not_a_username)
def test_generated_timezones_invite_codes_and_usernames_are_refused(
    client: TestClient, api_services: Services, member: dict[str, Any], reliability: Recorder,
    zone: str, code: str, username: str,
) -> None:  # fmt: skip
    nothing = Nothing(api_services)
    before = nothing.state()
    body = challenge_body(next_midnight(api_services.clock.now()))
    body["rules"]["time_window"]["timezone"] = zone
    refused(send(client, "/v1/challenges", body, member["headers"]), zone)
    join = {"invite_code": code, "timezone": "UTC"}
    refused(send(client, "/v1/challenges/join", join, member["headers"]), code)
    tag = uuid.uuid4().hex[:8]
    register = {"email": f"g_{tag}@example.com", "username": username, "password": "long enough"}
    refused(send(client, "/v1/auth/register", register, {}), username)
    assert nothing.state() == before
    reliability.add(AREA, inputs=3, requests=3)


# -- photos ------------------------------------------------------------------------------------


def real_png() -> bytes:
    """A genuine 2×2 grey PNG, built by hand (no image library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80\x80" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.txt", b"\x00" * 20_000_000)
    return out.getvalue()


HOSTILE_FILES = {
    "zip bomb": zip_bomb,
    "gzip bomb": lambda: gzip.compress(b"\x00" * 20_000_000),
    "svg with script": lambda: (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    ),
    "html": lambda: b"<!doctype html><script>fetch('/v1/wallet')</script>",
    "pdf": lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "gif/js polyglot": lambda: b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1);",
    "elf": lambda: b"\x7fELF\x02\x01\x01" + b"\x00" * 100,
    "empty": lambda: b"",
}
TRAVERSING_NAMES = ["../../../../tmp/owned.png", "..\\..\\owned.png", "/etc/passwd",
                    "a\x00.png", "%2e%2e%2fowned.png", "CON", "x" * 4000 + ".png"]  # fmt: skip


def test_hostile_photos_are_refused_and_a_traversing_name_stays_inside_the_store(
    client: TestClient, api_services: Services, member: dict[str, Any], reliability: Recorder,
    tmp_path: Path,
) -> None:  # fmt: skip
    path = f"/v1/challenges/{member['challenge_id']}/submissions"
    headers = member["headers"]
    nothing = Nothing(api_services)
    before = nothing.state()
    tried = 0
    for what, make in HOSTILE_FILES.items():
        data = make()
        for name in TRAVERSING_NAMES[:3]:
            files = {"file": (name, data, "image/png")}
            response = client.post(path, data={"proof_type": "photo"}, files=files, headers=headers)
            refused(response, what)
            tried += 1
    for bad_form in ({"proof_type": "video"}, {"proof_type": "photo"}, {"proof_type": "text"},
                     {"proof_type": "text", "text": " \t\n"}, {}):  # fmt: skip
        refused(client.post(path, data=bad_form, headers=headers), bad_form)
        tried += 1
    assert nothing.state() == before

    store = Path(api_services.config.storage_dir)
    outside_before = {p for p in store.parent.parent.rglob("*") if not p.is_relative_to(store)}
    files = {"file": (TRAVERSING_NAMES[0], real_png(), "image/png")}
    accepted = client.post(path, data={"proof_type": "photo"}, files=files, headers=headers)
    assert accepted.status_code == 201, accepted.text
    outside_after = {p for p in store.parent.parent.rglob("*") if not p.is_relative_to(store)}
    assert outside_after == outside_before
    assert not Path("/tmp/owned.png").exists()
    stored = [p for p in store.rglob("*") if p.is_file()]
    submission_id = accepted.json()["id"]
    assert stored and all(p.name.startswith(submission_id) for p in stored), stored
    reliability.add(AREA, inputs=tried + 1, requests=tried + 1)
