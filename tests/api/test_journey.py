"""The whole journey over HTTP on the embedded stack, with the workers running as in ``make run``.

Four players register, buy tokens through the simulated Stripe checkout, play a three-day
quorum challenge on the test clock (text and PNG proofs, one rejection with a penalty), the
settlement worker settles it by itself, an admin reads revenue and the journal, and a
withdrawal is refunded by the withdrawal worker through simulated Stripe.

Numbers (rules §5, ``PLATFORM_FEE_BPS=500`` here so revenue has a fee to show): four stakes of
1,000 and one penalty of 150 make a pool of 4,150; the fee is floor(4,150 × 5 %) = 207; the
three finishers share 3,943: 1,314 each, and the remainder 1 goes to the finisher with the
smallest user id (UUIDs as 128-bit integers).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from adapters.persistence import DatabaseSettings
from api import cli
from api.app import create_app
from api.bootstrap import Services, build_services
from tests.api.conftest import PASSWORD, api_config
from tests.photos import decoded, photo_bytes

pytestmark = pytest.mark.timeout(60)

STAKE, PENALTY, FEE_BPS = 1_000, 150, 500
RETURN_URLS = {
    "success_url": "http://127.0.0.1:8000/paid",
    "cancel_url": "http://127.0.0.1:8000/cancel",
}
WAIT_SECONDS = 10.0


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """Poll ``read`` until ``done`` holds for its value (at most ``WAIT_SECONDS``)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}: last value {value!r}")
        time.sleep(0.05)


def snapshot(seed: str, taken_at: datetime) -> bytes:
    """A real PNG of its own picture (no duplicate flags), taken at ``taken_at`` (UTC)."""
    return photo_bytes(seed, taken_at=taken_at, offset="+00:00")


@dataclass
class Player:
    """One registered, signed-in user talking to the API."""

    client: TestClient
    name: str
    email: str
    id: UUID
    token: str

    def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        r = self.client.request(method, f"/v1{path}", headers=headers, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and "json" in r.headers["content-type"] else r

    def get(self, path: str, expect: int = 200, **kw: Any) -> Any:
        return self.call("GET", path, expect, **kw)

    def post(self, path: str, expect: int = 200, **kw: Any) -> Any:
        return self.call("POST", path, expect, **kw)

    def deposit(self, tokens: int) -> None:
        """Open a checkout and pay on the simulated Stripe page (signed webhooks credit it)."""
        opened = self.post("/wallet/deposits", 201, json={"tokens": tokens, **RETURN_URLS})
        assert opened["amount_cents"] == tokens  # 1 token = 1 US cent
        page = "/v1/" + opened["checkout_url"].split("/v1/", 1)[1]
        shown = self.client.get(page)
        assert shown.status_code == 200 and "Simulated Stripe Checkout" in shown.text
        pay = re.search(r'action="(/v1/[^"]+/pay)"', shown.text)
        assert pay is not None, shown.text
        paid = self.client.post(pay.group(1), follow_redirects=False)
        assert paid.status_code == 303 and paid.headers["location"] == RETURN_URLS["success_url"]

    def wallet(self, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/wallet", params=params)
        return body

    def submit_text(self, cid: str, words: str) -> dict[str, Any]:
        form = {"proof_type": "text", "text": words}
        made: dict[str, Any] = self.post(f"/challenges/{cid}/submissions", 201, data=form)
        return made

    def submit_photo(self, cid: str, png: bytes) -> dict[str, Any]:
        made: dict[str, Any] = self.post(
            f"/challenges/{cid}/submissions",
            201,
            data={"proof_type": "photo"},
            files={"file": ("proof.png", png, "image/png")},
        )
        return made

    def vote(self, submission_id: str, approve: bool) -> dict[str, Any]:
        counted: dict[str, Any] = self.post(
            f"/submissions/{submission_id}/votes", 201, json={"approve": approve}
        )
        return counted


@pytest.fixture
def live(
    api_db: DatabaseSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Services]]:
    """The app as ``make run`` serves it: projection, settlement and withdrawal workers on."""
    monkeypatch.setenv("PLATFORM_FEE_BPS", str(FEE_BPS))
    config = api_config(tmp_path / "proofs", run_workers=True, worker_interval_seconds=0.1)
    services = build_services(config, db=api_db)
    try:
        with TestClient(create_app(services, start_workers=True)) as client:
            yield client, services
    finally:
        services.close()


def register(client: TestClient, name: str) -> Player:
    tag = uuid.uuid4().hex[:8]
    email, username = f"{name}.{tag}@example.com", f"{name}_{tag}"
    body = {"email": email, "username": username, "password": PASSWORD}
    created = client.post("/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    return Player(client, name, email, UUID(created.json()["id"]), login(client, email))


def login(client: TestClient, email: str) -> str:
    r = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "bearer"
    token: str = r.json()["access_token"]
    return token


def advance_to(who: Player, at: datetime) -> datetime:
    """Move the server's test clock to just past ``at``."""
    now = datetime.fromisoformat(who.get("/test-clock")["now"])
    seconds = int((at - now).total_seconds()) + 1
    assert seconds > 0, (now, at)
    moved = datetime.fromisoformat(
        who.post("/test-clock/advance", json={"seconds": seconds})["now"]
    )
    assert moved >= at
    return moved


def test_a_whole_challenge_over_http_with_the_workers_running(
    live: tuple[TestClient, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = live
    started = time.monotonic()

    # -- register four players and an admin (made with `peerpush create-admin EMAIL`) ----
    ada, bo, cy, di = (register(client, name) for name in ("ada", "bo", "cy", "di"))
    root = register(client, "root")
    monkeypatch.setenv("DB_SCHEMA", services.db.schema)
    assert cli.main(["create-admin", root.email]) == 0
    assert root.get("/auth/me")["role"] == "admin"
    ada.get("/platform/revenue", 403)  # admins only

    # -- deposits through the simulated checkout: the webhook credits a deposit lot -------
    ada.deposit(1_200)
    ada.deposit(800)  # a second lot: the withdrawal below spans both
    for p in (bo, cy, di):
        p.deposit(2_000)
    for p in (ada, bo, cy, di):
        funded = eventually(p.wallet, lambda w: w["deposited"] == 2_000, f"{p.name}'s deposits")
        assert funded["available"] == 2_000 and funded["staked"] == 0
    lots = ada.get("/wallet/lots")
    assert [(lot["source"], lot["amount"]) for lot in lots] == [
        ("deposit", 1_200),
        ("deposit", 800),
    ]
    assert all(lot["payment_intent_id"].startswith("pi_sim_") for lot in lots)

    # -- a three-day quorum challenge, published and joined by invite code ----------------
    now = datetime.fromisoformat(ada.get("/test-clock")["now"])
    starts_at = datetime.combine((now + timedelta(days=2)).date(), day_time(0), tzinfo=UTC)
    ends_at = starts_at + timedelta(days=3)
    draft = ada.post(
        "/challenges",
        201,
        json={
            "name": "Three mornings of running",
            "description": "a proof a day, reviewed by the others",
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "entry_stake": STAKE,
            "max_participants": 4,
            "rules": {
                "frequency": "daily",
                "time_window": {
                    "start": "06:00",
                    "end": "22:00",
                    "timezone": "UTC",
                    "scope": "challenge_tz",
                },
                "proof_types": ["photo", "text"],
                "verification": {"mode": "quorum", "quorum_pct": 60},
                "grace": 0,
                "penalty_tokens": PENALTY,
            },
        },
    )
    cid, code = draft["id"], draft["invite_code"]
    assert draft["status"] == "draft" and re.fullmatch(r"[A-Z0-9]{6}", code)
    published = ada.post(f"/challenges/{cid}/publish", json={"timezone": "UTC"})
    assert published["status"] == "active" and published["pool"] == STAKE
    for p in (bo, cy, di):
        joined = p.post("/challenges/join", 201, json={"invite_code": code, "timezone": "UTC"})
        assert joined == {**joined, "challenge_id": cid, "joined": True, "stake": STAKE}
    view = ada.get(f"/challenges/{cid}")
    assert (view["participants"], view["pool"]) == (4, 4 * STAKE)
    settles_at = ends_at + timedelta(hours=24)  # SETTLEMENT_DELAY_HOURS
    assert datetime.fromisoformat(view["settles_at"]) == settles_at
    staked = di.wallet(min_position=joined["position"])
    assert (staked["available"], staked["staked"]) == (1_000, STAKE)

    # -- day one: text and photo proofs; di's photo is rejected and costs a penalty -------
    advance_to(ada, starts_at + timedelta(hours=8))
    day1 = starts_at.date().isoformat()
    made = {
        "ada": ada.submit_text(cid, "ran 5 km along the river"),
        "bo": bo.submit_photo(cid, snapshot("bo-1", starts_at + timedelta(hours=7))),
        "cy": cy.submit_text(cid, "ran 4 km, then stretched"),
        "di": di.submit_photo(cid, snapshot("di-1", starts_at + timedelta(hours=7))),
    }
    for m in made.values():
        assert (m["slot"], m["status"], m["flags"]) == (day1, "pending", [])
    assert made["bo"]["proof_type"] == "photo" and made["ada"]["proof_type"] == "text"
    ada.post(f"/challenges/{cid}/submissions", 409, data={"proof_type": "text", "text": "again"})
    reviews = eventually(
        lambda: bo.get("/reviews"), lambda r: len(r) == 3, "bo's reviews (read models)"
    )
    assert {r["submission_id"] for r in reviews} == {made[n]["id"] for n in ("ada", "cy", "di")}
    assert {r["needed"] for r in reviews} == {2} and {r["eligible"] for r in reviews} == {3}
    proof = ada.get(f"/submissions/{made['bo']['id']}/proof")
    assert proof.headers["content-type"] == "image/png"
    sent = decoded(snapshot("bo-1", starts_at + timedelta(hours=7)))
    assert decoded(proof.content).tobytes() == sent.tobytes()  # lossless, metadata gone

    first = ada.vote(made["di"]["id"], approve=False)
    assert (first["status"], first["rejections"]) == ("pending", 1)
    rejected = bo.vote(made["di"]["id"], approve=False)  # rejections 2 > eligible 3 − needed 2
    assert rejected | {"position": 0} == {
        "status": "rejected",
        "approvals": 0,
        "rejections": 2,
        "needed": 2,
        "eligible": 3,
        "position": 0,
    }
    cy.post(f"/submissions/{made['di']['id']}/votes", 409, json={"approve": True})  # decided
    penalised = di.wallet(min_position=rejected["position"])
    assert (penalised["available"], penalised["penalised"]) == (1_000 - PENALTY, PENALTY)
    assert di.get(f"/submissions/{made['di']['id']}")["penalty"] == PENALTY
    approve_all(made, skip="di", voters=(ada, bo, cy, di))

    # -- days two and three: ada, bo and cy prove and are approved; di gives up -----------
    for day in (1, 2):
        advance_to(ada, starts_at + timedelta(days=day, hours=7))
        slot = (starts_at + timedelta(days=day)).date().isoformat()
        made = {
            "ada": ada.submit_photo(
                cid, snapshot(f"ada-{day}", starts_at + timedelta(days=day, hours=7))
            ),
            "bo": bo.submit_text(cid, f"day {day + 1}: 5 km"),
            "cy": cy.submit_photo(
                cid, snapshot(f"cy-{day}", starts_at + timedelta(days=day, hours=7))
            ),
        }
        assert {m["slot"] for m in made.values()} == {slot}
        approve_all(made, skip=None, voters=(ada, bo, cy, di))
    pending = ada.get(f"/challenges/{cid}/submissions", params={"status": "pending"})
    assert pending == []
    assert len(ada.get(f"/challenges/{cid}/submissions", params={"status": "accepted"})) == 9

    # -- settlement: not before ends_at + 24 h; then the worker settles by itself --------
    ada.post(f"/challenges/{cid}/settle", 409)
    advance_to(ada, settles_at)
    settled = eventually(
        lambda: ada.get(f"/challenges/{cid}"), lambda c: c["status"] == "settled", "settlement"
    )
    pool = 4 * STAKE + PENALTY
    fee = pool * FEE_BPS // 10_000
    finishers = sorted((ada, bo, cy), key=lambda p: p.id.int)
    share, remainder = divmod(pool - fee, len(finishers))
    assert (pool, fee, share, remainder) == (4_150, 207, 1_314, 1)
    shares = {p.id: share + (1 if i < remainder else 0) for i, p in enumerate(finishers)}
    assert settled["pool"] == 0
    assert settled["outcome"] | {"finishers": sorted(settled["outcome"]["finishers"])} == {
        "result": "paid_out",
        "finishers": sorted(str(p.id) for p in finishers),
        "fee": fee,
        "forfeited": 0,
        "returned": 3 * STAKE,
        "paid_out": pool - fee - 3 * STAKE,
    }

    stream = root.get("/audit/events", params={"after": 0, "limit": 1000})
    assert stream["next_after"] is None and stream["items"][-1]["topic"].endswith("Settled")
    head = stream["items"][-1]["position"]  # the settlement's last event
    people = {
        UUID(p["user_id"]): p
        for p in ada.get(f"/challenges/{cid}/participants", params={"min_position": head})
    }
    for p in finishers:
        row = people[p.id]
        assert (row["expected"], row["accepted"], row["finished"]) == (3, 3, True)
        assert row["share"] == shares[p.id]
    assert people[di.id] | {"joined_at": None} == {
        "user_id": str(di.id),
        "timezone": "UTC",
        "stake": STAKE,
        "penalties": PENALTY,
        "joined_at": None,
        "expected": 3,
        "accepted": 0,
        "finished": False,
        "share": 0,
    }
    assert sum(shares.values()) + fee == pool

    # -- wallets, lots and history after settlement ---------------------------------------
    for p in finishers:
        w = p.wallet(min_position=head)
        won = shares[p.id] - STAKE  # the stake returns to its lots; only the excess is won
        assert (w["available"], w["staked"], w["won"], w["forfeited"]) == (
            2_000 - STAKE + shares[p.id],
            0,
            won,
            0,
        )
        payout = [lot for lot in p.get("/wallet/lots") if lot["source"] == "payout"]
        assert [(lot["amount"], lot["remaining"]) for lot in payout] == [(won, won)]
        assert payout[0]["payment_intent_id"] is None and payout[0]["refundable_until"] is None
    lost = di.wallet(min_position=head)
    assert (lost["available"], lost["staked"], lost["forfeited"], lost["penalised"]) == (
        2_000 - STAKE - PENALTY,
        0,
        STAKE,
        PENALTY,
    )
    assert [lot["remaining"] for lot in di.get("/wallet/lots")] == [2_000 - STAKE - PENALTY]

    history = ada.get("/wallet/transactions", params={"limit": 2})
    assert [t["type"] for t in history["items"]] == ["settlement", "stake"]
    assert history["items"][0]["amount"] == shares[ada.id]
    older = ada.get("/wallet/transactions", params={"cursor": history["next_cursor"]})
    assert [(t["type"], t["amount"]) for t in older["items"]] == [
        ("deposit", 800),
        ("deposit", 1_200),
    ]
    assert older["next_cursor"] is None
    penalties = di.get("/wallet/transactions", params={"type": "penalty"})["items"]
    assert [(t["amount"], t["challenge_id"]) for t in penalties] == [(-PENALTY, cid)]

    # -- platform: revenue and the journal (admin) ---------------------------------------
    by_challenge = root.get("/platform/revenue", params={"group_by": "challenge"})["items"]
    assert [(r["challenge_id"], r["fees"], r["forfeits"], r["net"]) for r in by_challenge] == [
        (cid, fee, 0, fee)
    ]
    by_day = root.get("/platform/revenue", params={"min_position": head})["items"]
    assert sum(r["fees"] for r in by_day) == fee and sum(r["net"] for r in by_day) == fee
    entries, cursor = [], None
    while True:
        page = root.get(
            "/platform/journal", params={"limit": 50, **({"cursor": cursor} if cursor else {})}
        )
        entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert entries and all(sum(x["amount"] for x in e["postings"]) == 0 for e in entries)
    balances: dict[str, int] = {}
    for e in entries:
        for x in e["postings"]:
            balances[x["account"]] = balances.get(x["account"], 0) + x["amount"]
    assert balances["platform:revenue"] == fee
    assert all(v == 0 for k, v in balances.items() if k.startswith(f"challenge:{cid}:"))
    ledger = ada.get(f"/challenges/{cid}/ledger")
    assert ledger["pool"] == 0
    ada.get("/platform/journal", 403)

    # -- a withdrawal: refunded lot by lot by the worker through simulated Stripe ---------
    refundable = 2_000  # both deposit lots, full again (the stake came back to them)
    too_much = ada.post("/wallet/withdrawals", 409, json={"tokens": refundable + 1})
    assert too_much["code"] == "not_refundable"
    requested = ada.post("/wallet/withdrawals", 202, json={"tokens": 1_500})
    assert requested["status"] == "pending"
    by_lot = {lot["lot_id"]: lot["tokens"] for lot in requested["lots"]}
    assert list(by_lot.values()) == [1_200, 300]  # FIFO: oldest lot first
    wid = requested["withdrawal_id"]
    done = eventually(
        lambda: ada.get(
            f"/wallet/withdrawals/{wid}", params={"min_position": requested["position"]}
        ),
        lambda w: w["status"] == "settled",
        "the withdrawal worker's refunds",
    )
    assert done["tokens"] == 1_500
    assert {lot["lot_id"]: lot["status"] for lot in done["lots"]} == dict.fromkeys(
        by_lot, "refunded"
    )
    hold = services.ledger.wallet_of(ada.id).withdrawals[wid]
    assert all(refund.startswith("re_sim_") for refund in hold.refund_ids.values())

    # -- final balances: every token is somewhere -----------------------------------------
    final = ada.wallet(min_position=done["position"])
    assert (final["available"], final["withdrawal_pending"], final["refunded"]) == (
        2_000 - STAKE + shares[ada.id] - 1_500,
        0,
        1_500,
    )
    lots = ada.get("/wallet/lots")
    assert [(lot["source"], lot["remaining"]) for lot in lots] == [
        ("deposit", 0),
        ("deposit", 500),
        ("payout", shares[ada.id] - STAKE),
    ]
    latest = ada.get("/wallet/transactions", params={"limit": 3})["items"]
    assert sorted((t["type"], t["amount"], t["tokens"]) for t in latest) == [
        ("refund", 0, 300),  # the held tokens leave for the card: available is unchanged
        ("refund", 0, 1_200),
        ("withdrawal", -1_500, 1_500),
    ]
    assert {t["withdrawal_id"] for t in latest} == {wid}
    everyone = [ada.wallet(), bo.wallet(), cy.wallet(), di.wallet()]
    held = sum(w["available"] + w["staked"] + w["withdrawal_pending"] for w in everyone)
    assert held + sum(w["refunded"] for w in everyone) + fee == 8_000
    assert time.monotonic() - started < 60


def approve_all(
    made: dict[str, dict[str, Any]], skip: str | None, voters: tuple[Player, ...]
) -> None:
    """Two other participants approve each submission (needed = ceil(60 % × 3) = 2)."""
    for name, m in made.items():
        if name == skip:
            continue
        others = [v for v in voters if v.name != name][:2]
        assert others[0].vote(m["id"], approve=True)["status"] == "pending"
        assert others[1].vote(m["id"], approve=True)["status"] == "accepted"
