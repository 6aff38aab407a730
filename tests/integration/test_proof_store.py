"""One contract, two proof stores: a local directory and S3 (moto's server on 127.0.0.1).

The S3 store talks real HTTP to a real S3-speaking server through boto3; nothing of ours is
mocked.
"""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.proof_store import (
    LocalProofStore,
    ProofExists,
    ProofMissing,
    S3ProofStore,
    build_proof_store,
)
from adapters.settings import ServiceSettings

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3-speaking server for this test session, on a free local port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str) -> S3ProofStore:
    store = S3ProofStore.connect(
        f"proofs-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint, **CREDENTIALS
    )
    store.ensure_bucket()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalProofStore(tmp_path / "proofs")
    return s3_store(request.getfixturevalue("moto_endpoint"))


def key() -> str:
    return f"challenges/{uuid.uuid4()}/{uuid.uuid4()}/2030-01-07/{uuid.uuid4()}"


def read_back(store: Any, k: str) -> bytes:
    """What a client gets: the bytes directly, or by following the presigned URL."""
    url = store.url_for(k)
    if url is None:
        data: bytes = store.get(k)
        return data
    with urllib.request.urlopen(url, timeout=5) as response:  # a local server
        return bytes(response.read())


def test_a_stored_proof_reads_back_byte_for_byte(store: Any) -> None:
    k = key()
    store.put(k, PNG, "image/png")
    assert store.get(k) == PNG
    assert hashlib.sha256(read_back(store, k)).hexdigest() == hashlib.sha256(PNG).hexdigest()


def test_a_proof_is_never_overwritten(store: Any) -> None:
    k = key()
    store.put(k, PNG, "image/png")
    with pytest.raises(ProofExists):
        store.put(k, b"something else", "text/plain; charset=utf-8")
    assert store.get(k) == PNG


def test_a_missing_proof_is_named_as_missing(store: Any) -> None:
    with pytest.raises(ProofMissing):
        store.get(key())
    assert store.uploaded_at(key()) is None


def test_a_deleted_proof_is_gone_and_its_key_can_be_used_again(store: Any) -> None:
    k = key()
    store.put(k, PNG, "image/png")
    assert store.uploaded_at(k) is not None
    store.delete(k)
    with pytest.raises(ProofMissing):
        store.get(k)
    store.delete(k)  # deleting twice is harmless
    store.put(k, b"again", "text/plain; charset=utf-8")
    assert store.get(k) == b"again"


def test_keys_that_could_escape_the_store_are_refused(store: Any) -> None:
    for bad in ("../etc/passwd", "/abs/path", "a//b", "a/../b", "a b", ""):
        with pytest.raises(ValueError):
            store.put(bad, b"x", "text/plain")


def test_the_local_store_serves_bytes_itself(tmp_path: Path) -> None:
    store = LocalProofStore(tmp_path)
    k = key()
    store.put(k, b"did my run", "text/plain; charset=utf-8")
    assert store.url_for(k) is None
    assert store.content_type(k) == "text/plain; charset=utf-8"
    assert not [p for p in tmp_path.rglob(".upload-*")]  # no temporary files left behind


def test_s3_hands_out_short_lived_presigned_urls(moto_endpoint: str) -> None:
    store = s3_store(moto_endpoint)
    k = key()
    store.put(k, PNG, "image/png")
    url = store.url_for(k, expires_seconds=60)
    assert url is not None
    assert url.startswith(moto_endpoint)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=5) as response:  # a local server
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == PNG


def test_the_configured_store_is_built_from_settings(tmp_path: Path, moto_endpoint: str) -> None:
    local = build_proof_store(ServiceSettings(storage="local", storage_dir=tmp_path))
    assert isinstance(local, LocalProofStore)
    s3 = build_proof_store(
        ServiceSettings(storage="s3", s3_bucket="peerpush-proofs", s3_endpoint_url=moto_endpoint)
    )
    assert isinstance(s3, S3ProofStore)
    assert s3.client.meta.endpoint_url == moto_endpoint
    with pytest.raises(RuntimeError):
        build_proof_store(ServiceSettings(storage="ftp"))
