"""Photo proofs that are hard to fake, over HTTP (rules §4): what a participant's photo is
flagged for and why, what reviewers and readers get back, and what is refused.

Every photo is made here with Pillow (``tests/photos.py``), its EXIF written with piexif.
The challenges come from ``running_challenge``: daily slots, a whole-day window in UTC, an
``auto`` challenge whose first slot is open.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from api.bootstrap import Services
from domain.values import image_type as sniff
from tests.api.test_challenges import Player, Stack, challenge_body, next_midnight
from tests.api.test_submissions import running_challenge, stored_files
from tests.photos import decoded, decompression_bomb, exif_bytes, photo_bytes, picture, variant


@pytest.fixture
def stack(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Any]
) -> Stack:
    return Stack(api_client, api_services, register_user)


def send(who: Player, cid: str, data: bytes, declared: str = "image/png") -> Any:
    return who.post(
        f"/challenges/{cid}/submissions",
        data={"proof_type": "photo"},
        files={"file": ("proof", data, declared)},
    )


def taken(stack: Stack, minutes_ago: float) -> datetime:
    """A capture time ``minutes_ago`` before the business clock's now (UTC wall clock)."""
    return stack.now() - timedelta(minutes=minutes_ago)


def head(services: Services) -> int:
    return services.ledger.recorder.max_notification_id() or 0


def test_a_photo_taken_in_the_window_is_accepted_as_it_is(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    r = send(owner, cid, photo_bytes("in-window", taken_at=taken(stack, 20), offset="+00:00"))
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["flags"], r.json()["flag_reasons"]) == (
        "accepted",
        [],
        {},
    )


def test_a_photo_taken_outside_the_window_is_flagged_and_reviewers_see_why(
    stack: Stack,
) -> None:
    cid, (owner, peer) = running_challenge(stack)
    yesterday = taken(stack, 26 * 60)  # the window opened at midnight, about an hour ago
    r = send(owner, cid, photo_bytes("yesterday", taken_at=yesterday, offset="+00:00"))
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["flags"]) == ("pending", ["capture_time_outside_window"])
    why = peer.get(f"/submissions/{r.json()['id']}").json()["flag_reasons"]
    assert list(why) == ["capture_time_outside_window"]
    assert "before the slot's window opened" in why["capture_time_outside_window"]
    stack.catch_up()
    review = peer.get("/reviews").json()
    assert [x["flag_reasons"] for x in review if x["submission_id"] == r.json()["id"]] == [why]


def test_a_photo_without_exif_is_flagged_but_not_held_for_review(stack: Stack) -> None:
    cid, (owner, peer) = running_challenge(stack)
    r = send(owner, cid, photo_bytes("stripped-by-its-app"))
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["flags"]) == ("accepted", ["capture_time_missing"])
    listed = peer.get(f"/challenges/{cid}/submissions").json()
    assert [x["flags"] for x in listed] == [["capture_time_missing"]]


def test_a_capture_time_without_offset_is_read_in_the_participants_timezone(
    stack: Stack,
) -> None:
    """A camera in Tokyo writes 09:00 for midnight UTC: no offset, so the participant's
    timezone (given when joining) says what it means."""
    starts_at = next_midnight(stack.now())
    owner = stack.user()
    body = challenge_body(starts_at)
    body["rules"]["time_window"] = {"start": "06:00", "end": "12:00", "scope": "participant_local"}
    body["rules"]["time_window"]["timezone"] = "Asia/Tokyo"
    cid = owner.post("/challenges", json=body).json()["id"]
    code = owner.post(f"/challenges/{cid}/publish", json={"timezone": "Asia/Tokyo"}).json()
    peer = stack.user()
    join = {"invite_code": code["invite_code"], "timezone": "Asia/Tokyo"}
    assert peer.post("/challenges/join", json=join).is_success
    stack.advance_to(owner, starts_at + timedelta(hours=1))  # 10:00 in Tokyo
    tokyo_wall_clock = (starts_at + timedelta(hours=9, minutes=30)).replace(tzinfo=None)
    local = send(owner, cid, photo_bytes("tokyo", taken_at=tokyo_wall_clock))
    assert local.status_code == 201 and local.json()["flags"] == []
    said_utc = send(peer, cid, photo_bytes("utc", taken_at=tokyo_wall_clock, offset="+00:00"))
    assert said_utc.json()["flags"] == ["capture_time_outside_window"]  # 18:30 in Tokyo


@pytest.mark.parametrize("how", ["reencoded", "resized", "cropped"])
def test_a_copy_of_an_earlier_photo_is_flagged_near_duplicate(stack: Stack, how: str) -> None:
    cid, (owner, peer) = running_challenge(stack)
    original = photo_bytes(f"original-{how}", taken_at=taken(stack, 10), offset="+00:00")
    assert send(owner, cid, original).json()["flags"] == []
    copy = variant(original, how)
    r = send(peer, cid, copy, "image/jpeg" if how == "reencoded" else "image/png")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    assert "near_duplicate" in r.json()["flags"]
    assert "perceptual-hash bits differ" in r.json()["flag_reasons"]["near_duplicate"]


def test_an_unrelated_photo_is_not_a_near_duplicate(stack: Stack) -> None:
    cid, (owner, peer) = running_challenge(stack)
    at = taken(stack, 10)
    assert send(owner, cid, photo_bytes("mine", taken_at=at, offset="+00:00")).status_code == 201
    r = send(peer, cid, photo_bytes("someone else's", taken_at=at, offset="+00:00"))
    assert (r.json()["status"], r.json()["flags"]) == ("accepted", [])


def test_a_gps_tagged_upload_is_served_without_gps(stack: Stack) -> None:
    cid, (owner, peer) = running_challenge(stack)
    upload = photo_bytes(
        "where-i-live", fmt="JPEG", taken_at=taken(stack, 5), offset="+00:00", gps=True
    )
    assert decoded(upload).getexif().get_ifd(0x8825)  # the upload does carry a position
    sid = send(owner, cid, upload, "image/jpeg").json()["id"]
    served = peer.get(f"/submissions/{sid}/proof")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    image = decoded(served.content)
    assert dict(image.getexif()) == {} and not image.getexif().get_ifd(0x8825)
    assert b"Exif" not in served.content and b"TestCam" not in served.content
    assert image.size == decoded(upload).size


def test_the_orientation_is_applied_before_the_exif_is_dropped(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    sideways = io.BytesIO()
    exif = exif_bytes(taken(stack, 5), offset="+00:00", orientation=6)  # rotate 90° to view
    picture("portrait", (120, 80)).save(sideways, "JPEG", exif=exif)
    sid = send(owner, cid, sideways.getvalue(), "image/jpeg").json()["id"]
    assert decoded(owner.get(f"/submissions/{sid}/proof").content).size == (80, 120)


def truncated_jpeg() -> bytes:
    whole = photo_bytes("cut-short", fmt="JPEG")
    return whole[: len(whole) * 2 // 3]


@pytest.mark.parametrize(
    ("upload", "declared", "status", "code"),
    [
        (decompression_bomb, "image/png", 422, "photo_too_many_pixels"),
        (truncated_jpeg, "image/jpeg", 422, "invalid_photo"),
        (lambda: photo_bytes("a-png"), "image/jpeg", 415, "unsupported_image"),
    ],
    ids=["decompression-bomb", "truncated-jpeg", "png-sent-as-jpeg"],
)
def test_a_photo_that_cannot_be_trusted_is_refused_and_nothing_is_recorded(
    stack: Stack, upload: Any, declared: str, status: int, code: str
) -> None:
    cid, (owner, _) = running_challenge(stack)
    files, position = stored_files(stack), head(stack.services)
    r = send(owner, cid, upload(), declared)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert stored_files(stack) == files
    assert head(stack.services) == position
    assert owner.get(f"/challenges/{cid}/submissions").json() == []
    # The slot is still free for a photo that can be trusted.
    ok = send(owner, cid, photo_bytes(f"retry-{code}", taken_at=taken(stack, 5), offset="+00:00"))
    assert ok.status_code == 201, ok.text


def random_image() -> st.SearchStrategy[bytes]:
    """Small images of every common mode and both formats, sometimes damaged."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        fmt = draw(st.sampled_from(["PNG", "JPEG"]))
        modes = ["L", "RGB", "CMYK"] if fmt == "JPEG" else ["1", "L", "LA", "P", "RGB", "RGBA"]
        mode = draw(st.sampled_from(modes))
        bands = len(Image.new(mode, (1, 1)).getbands())
        pixels = draw(st.binary(min_size=width * height * bands, max_size=width * height * bands))
        image = Image.frombytes(mode, (width, height), pixels) if mode != "1" else None
        image = image or Image.frombytes("L", (width, height), pixels).convert("1")
        out = io.BytesIO()
        image.save(out, fmt)
        data = out.getvalue()
        damage = draw(st.sampled_from(["none", "cut", "flip"]))
        if damage == "cut":
            data = data[: draw(st.integers(1, max(1, len(data) - 1)))]
        elif damage == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        return data

    return build()


@pytest.fixture
def long_challenge(stack: Stack) -> tuple[str, Player]:
    """An auto challenge of 200 daily slots whose first one is open."""
    starts_at = next_midnight(stack.now())
    owner = stack.user()
    body = challenge_body(starts_at, ends_at=(starts_at + timedelta(days=200)).isoformat())
    cid = owner.post("/challenges", json=body).json()["id"]
    code = owner.post(f"/challenges/{cid}/publish").json()["invite_code"]
    assert stack.user().post("/challenges/join", json={"invite_code": code, "timezone": "UTC"})
    stack.advance_to(owner, starts_at + timedelta(hours=1))
    return cid, owner


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=random_image(),
    declared=st.sampled_from(["as-made", "as-made", "application/octet-stream", "image/png"]),
)
def test_random_small_images_never_cause_a_server_error(
    stack: Stack,
    lenient_client: TestClient,
    long_challenge: tuple[str, Player],
    data: bytes,
    declared: str,
) -> None:
    cid, owner = long_challenge
    me = Player(lenient_client, owner.id, owner.headers)
    stack.advance_to(owner, stack.now() + timedelta(days=1))  # a fresh slot for each image
    if declared == "as-made":
        declared = sniff(data) or "image/png"
    r = send(me, cid, data, declared)
    event(f"answered {r.status_code}")
    assert r.status_code in (201, 415, 422), r.text
    if r.status_code == 201:
        served = me.get(f"/submissions/{r.json()['id']}/proof")
        assert served.status_code == 200
        assert decoded(served.content).size == decoded(data).size
