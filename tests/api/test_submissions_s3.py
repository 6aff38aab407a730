"""Proofs in S3 over HTTP: stored under their key in a bucket on moto's server (127.0.0.1),
and served as a redirect to a short-lived presigned URL.

This module's app is built with ``STORAGE=s3``; the fixtures of ``tests/api/conftest.py``
(clients, users) run on it unchanged.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.persistence import DatabaseSettings
from adapters.proof_store import S3ProofStore
from adapters.settings import ServiceSettings
from api.bootstrap import Services, build_services
from tests.api.test_challenges import Stack, photo, png
from tests.api.test_submissions import running_challenge
from tests.photos import decoded


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_services(api_db: DatabaseSettings, s3_endpoint: str) -> Iterator[Services]:
    """The conftest's services, but with proofs in S3."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_REGION", "us-east-1")
        config = ServiceSettings(
            jwt_secret="tests-only-signing-key-0123456789abcdef",
            rate_limits=False,
            run_workers=False,
            storage="s3",
            storage_dir=Path("/nonexistent"),
            s3_bucket=f"proofs-{uuid.uuid4().hex[:12]}",
            s3_endpoint_url=s3_endpoint,
        )
        services = build_services(config, db=api_db)
        assert isinstance(services.proofs, S3ProofStore)
        services.proofs.ensure_bucket()
        try:
            yield services
        finally:
            services.close()


@pytest.fixture
def stack(
    api_client: TestClient, api_services: Services, register_user: Callable[..., Any]
) -> Stack:
    return Stack(api_client, api_services, register_user)


def test_a_photo_lands_in_the_bucket_under_its_submission_key(stack: Stack) -> None:
    cid, (_, other) = running_challenge(stack)
    r = photo(other, cid, png("s3-proof"))
    assert r.status_code == 201, r.text
    sid, slot = r.json()["id"], r.json()["slot"]
    store = stack.services.proofs
    assert isinstance(store, S3ProofStore)
    key = f"challenges/{cid}/{other.id}/{slot}/{sid}"
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    kept = store.get(key)
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(kept)
    assert decoded(kept).tobytes() == decoded(png("s3-proof")).tobytes()


def test_a_proof_is_served_by_a_redirect_to_a_presigned_url(stack: Stack) -> None:
    cid, (owner, other) = running_challenge(stack)
    sid = photo(other, cid, png("redirected")).json()["id"]
    r = owner.get(f"/submissions/{sid}/proof", follow_redirects=False)
    assert r.status_code == 307
    url = r.headers["location"]
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    with urllib.request.urlopen(url, timeout=5) as fetched:  # moto on 127.0.0.1
        assert decoded(fetched.read()).tobytes() == decoded(png("redirected")).tobytes()
        assert fetched.headers["Content-Type"] == "image/png"
    assert stack.user(0).get(f"/submissions/{sid}/proof").status_code == 403


def test_a_refused_submission_leaves_no_object_behind(stack: Stack) -> None:
    cid, (owner, _) = running_challenge(stack)
    assert photo(owner, cid, png("kept")).status_code == 201
    assert photo(owner, cid, png("second")).status_code == 409
    store = stack.services.proofs
    assert isinstance(store, S3ProofStore)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"challenges/{cid}/")
    assert listed["KeyCount"] == 1
