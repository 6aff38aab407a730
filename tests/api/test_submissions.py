"""Submitting proofs over HTTP: what is refused, and how a proof is stored and served.

Local proof storage here (the embedded default); ``test_submissions_s3.py`` runs the
S3 variant against moto's server.
"""

from __future__ import annotations

import os
import struct
import time as wall
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.proof_store import LocalProofStore
from api.bootstrap import Services
from application.submissions import ORPHAN_AFTER, store_proof
from domain.errors import Conflict
from domain.proofs import Proof
from tests.api.test_challenges import Player, Stack, challenge_body, next_midnight, photo, png
from tests.photos import decoded, photo_bytes

MiB = 1024 * 1024


@pytest.fixture
def stack(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Any]
) -> Stack:
    return Stack(api_client, api_services, register_user)


def running_challenge(
    stack: Stack, *, players: int = 2, **overrides: Any
) -> tuple[str, list[Player]]:
    """A published challenge with ``players`` participants, its first slot open now."""
    starts_at = next_midnight(stack.now())
    owner = stack.user()
    cid = owner.post("/challenges", json=challenge_body(starts_at, **overrides)).json()["id"]
    code = owner.post(f"/challenges/{cid}/publish").json()["invite_code"]
    joined = [owner]
    for _ in range(players - 1):
        p = stack.user()
        assert p.post("/challenges/join", json={"invite_code": code, "timezone": "UTC"}).is_success
        joined.append(p)
    stack.advance_to(owner, starts_at + timedelta(hours=1))
    return cid, joined


def padded_to(png_data: bytes, size: int) -> bytes:
    """The PNG grown to exactly ``size`` bytes by a private ancillary chunk before IEND
    (decoders skip it), so it stays a valid PNG."""
    iend = png_data.rindex(b"IEND") - 4
    filler = size - len(png_data) - 12
    body = b"\x00" * filler
    chunk = (
        struct.pack(">I", filler) + b"peRp" + body + struct.pack(">I", zlib.crc32(b"peRp" + body))
    )
    return png_data[:iend] + chunk + png_data[iend:]


def stored_files(stack: Stack) -> list[Path]:
    root = Path(stack.services.config.storage_dir)
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_text_proof_is_stored_as_an_object_and_served_to_participants(stack: Stack) -> None:
    cid, (owner, other) = running_challenge(stack)
    outsider = stack.user(0)
    r = other.post(
        f"/challenges/{cid}/submissions", data={"proof_type": "text", "text": "did 20 push-ups"}
    )
    assert r.status_code == 201, r.text
    sid, slot = r.json()["id"], r.json()["slot"]
    detail = owner.get(f"/submissions/{sid}").json()
    assert detail["mime_type"] == "text/plain; charset=utf-8" and detail["size"] == 15
    expected_key = f"challenges/{cid}/{other.id}/{slot}/{sid}"
    assert stack.services.proofs.get(expected_key) == b"did 20 push-ups"

    served = owner.get(f"/submissions/{sid}/proof")
    assert served.status_code == 200 and served.content == b"did 20 push-ups"
    assert served.headers["content-type"].startswith("text/plain")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert outsider.get(f"/submissions/{sid}/proof").status_code == 403  # public challenge
    assert outsider.get(f"/submissions/{sid}").status_code == 403


def test_a_photo_is_sniffed_not_trusted(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    gif = b"GIF89a" + b"\x00" * 100
    r = owner.post(
        f"/challenges/{cid}/submissions",
        data={"proof_type": "photo"},
        files={"file": ("proof.png", gif, "image/png")},
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported_image"
    jpeg = photo_bytes("sniffed", fmt="JPEG")
    r = owner.post(
        f"/challenges/{cid}/submissions",
        data={"proof_type": "photo"},
        files={"file": ("proof.bin", jpeg, "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert owner.get(f"/submissions/{sid}").json()["mime_type"] == "image/jpeg"
    served = owner.get(f"/submissions/{sid}/proof")
    assert served.headers["content-type"] == "image/jpeg"
    assert decoded(served.content).format == "JPEG"
    assert decoded(served.content).size == decoded(jpeg).size


def test_a_proof_type_the_rules_do_not_allow_is_refused_before_upload(stack: Stack) -> None:
    rules = {"proof_types": ["text"], "time_window": {"scope": "challenge_tz"}}
    cid, (owner, _) = running_challenge(stack, rules=rules)
    before = stored_files(stack)
    r = photo(owner, cid, png("not-allowed"))
    assert r.status_code == 415 and r.json()["code"] == "proof_type_not_allowed"
    assert stored_files(stack) == before


def test_an_oversized_photo_is_refused_with_413(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * MiB)
    r = photo(owner, cid, big)
    assert r.status_code == 413 and r.json()["code"] == "proof_too_large"
    exactly = padded_to(png("exactly-10-mib"), 10 * MiB)
    assert len(exactly) == 10 * MiB
    assert photo(owner, cid, exactly).status_code == 201


def test_the_size_cap_does_not_trust_content_length(stack: Stack) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the cap."""
    cid, (owner, _) = running_challenge(stack)
    boundary = "proofboundary"
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="proof_type"\r\n\r\n'
            f'photo\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="p.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode() + b"\x89PNG\r\n\x1a\n"
        for _ in range(40):  # 40 MiB offered
            sent["bytes"] += MiB
            yield b"\x00" * MiB
        yield f"\r\n--{boundary}--\r\n".encode()

    r = owner.post(
        f"/challenges/{cid}/submissions",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413


def test_only_participants_submit_and_private_challenges_stay_hidden(stack: Stack) -> None:
    cid, _ = running_challenge(stack)
    stranger = stack.user(0)
    r = stranger.post(f"/challenges/{cid}/submissions", data={"proof_type": "text", "text": "hi"})
    assert r.status_code == 403 and r.json()["code"] == "not_participant"

    private = {"visibility": "private", "allow_list": []}
    hidden, (owner,) = running_challenge(stack, players=1, **private)
    r = stranger.post(f"/challenges/{hidden}/submissions", data={"proof_type": "text", "text": "x"})
    assert r.status_code == 404
    mine = owner.post(f"/challenges/{hidden}/submissions", data={"proof_type": "text", "text": "x"})
    sid = mine.json()["id"]
    assert stranger.get(f"/submissions/{sid}").status_code == 404
    assert stranger.get(f"/submissions/{sid}/proof").status_code == 404
    assert stranger.post(f"/submissions/{sid}/votes", json={"approve": False}).status_code == 404


def test_one_proof_per_slot_and_the_first_one_is_kept(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    first = photo(owner, cid, png("first"))
    assert first.status_code == 201
    second = photo(owner, cid, png("second"))
    assert second.status_code == 409 and second.json()["code"] == "duplicate_submission"
    sid = first.json()["id"]
    served = owner.get(f"/submissions/{sid}/proof").content
    assert decoded(served).tobytes() == decoded(png("first")).tobytes()


def test_submissions_outside_the_challenge_are_refused_without_leaving_objects(
    stack: Stack,
) -> None:
    starts_at = next_midnight(stack.now())
    owner = stack.user()
    cid = owner.post("/challenges", json=challenge_body(starts_at)).json()["id"]
    owner.post(f"/challenges/{cid}/publish")
    before = stored_files(stack)
    r = photo(owner, cid, png("too-early"))
    assert r.status_code == 409 and r.json()["code"] == "submission_refused"
    assert stored_files(stack) == before


def test_bad_forms_are_422_not_500(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    url = f"/challenges/{cid}/submissions"
    cases: list[dict[str, Any]] = [
        {"data": {"proof_type": "video"}},
        {"data": {"proof_type": "text"}},
        {"data": {"proof_type": "text", "text": "   "}},
        {"data": {"proof_type": "photo"}, "files": {"x": ("a", b"b")}},
        {"data": {"proof_type": "photo", "text": "caption"}, "files": {"file": ("p", png("c"))}},
        {"data": {"proof_type": "text", "text": "t"}, "files": {"file": ("p", png("c"))}},
    ]
    for case in cases:
        r = owner.post(url, **case)
        assert r.status_code == 422, (case, r.text)
    r = owner.post(url, json={"proof_type": "text", "text": "json"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_content_type"
    r = owner.post(url, data={"proof_type": "text", "text": "x" * 10_001})
    assert r.status_code == 413


def test_a_repeated_idempotency_key_replays_the_submission(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    key = {"Idempotency-Key": "proof-1"}
    form = {"proof_type": "text", "text": "went for a swim"}
    first = owner.post(f"/challenges/{cid}/submissions", data=form, headers=key)
    again = owner.post(f"/challenges/{cid}/submissions", data=form, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = owner.post(
        f"/challenges/{cid}/submissions", data={**form, "text": "something else"}, headers=key
    )
    assert other.status_code == 422


def test_a_fresh_upload_for_a_slot_blocks_another_but_an_old_orphan_is_replaced(
    tmp_path: Path,
) -> None:
    store = LocalProofStore(tmp_path)
    key = "challenges/c/p/2030-01-07/s"
    store.put(key, b"in flight", "text/plain")
    with pytest.raises(Conflict):
        store_proof(store, key, Proof("text", b"mine", "text/plain"))
    assert store.get(key) == b"in flight"
    old = wall.time() - ORPHAN_AFTER.total_seconds() - 60
    os.utime(tmp_path / key, (old, old))
    store_proof(store, key, Proof("text", b"mine", "text/plain"))
    assert store.get(key) == b"mine"
