"""Where proofs live: a local directory (the embedded default) or S3 (boto3).

Proofs are write-once. A key names one submission (``challenges/{challenge}/{participant}/
{slot}/{submission}``, rules §4) and the event records the object's SHA-256, so an object is
never replaced: ``put`` refuses an existing key with :class:`ProofExists` (an exclusive
hard link locally, ``If-None-Match: *`` on S3). Two racing uploads for one slot therefore
cannot overwrite each other, and the loser never deletes the winner's object.

Both stores implement the whole :class:`~application.ports.ProofStore` port, including
``delete`` (to remove the object of a refused submission) and ``uploaded_at`` (to recognise
an orphan left by a crash).
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from application.ports import ProofExists, ProofMissing, ProofStore

__all__ = [
    "LocalProofStore",
    "ProofExists",
    "ProofMissing",
    "S3ProofStore",
    "build_proof_store",
    "check_key",
]

SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
PRESIGNED_SECONDS_MAX = 3600


def check_key(key: str) -> str:
    """Keys are relative paths of safe segments: no ``..``, no leading slash."""
    if not SAFE_KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a proof key: {key!r}")
    return key


class LocalProofStore:
    """Proofs as files under one directory; the API serves their bytes itself."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then hard-linked into place: the link is atomic and fails if the
        # key exists, so a reader never sees half a file and nothing is overwritten.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ProofExists(f"a proof is already stored at {key}") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._type_path(key).write_text(content_type)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ProofMissing(f"no proof stored at {key}") from None

    def content_type(self, key: str) -> str:
        try:
            return self._type_path(key).read_text()
        except FileNotFoundError:
            return "application/octet-stream"

    def url_for(self, key: str, expires_seconds: int = 300) -> str | None:
        check_key(key)
        return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._type_path(key).unlink(missing_ok=True)

    def uploaded_at(self, key: str) -> datetime | None:
        try:
            return datetime.fromtimestamp(self._path(key).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _type_path(self, key: str) -> Path:
        # The content type sits beside the object (keys never end in ".content-type").
        path = self._path(key)
        return path.with_name(path.name + ".content-type")


class S3ProofStore:
    """Proofs in an S3 bucket; readers fetch them through short-lived presigned URLs."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def connect(
        cls,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        **credentials: str,
    ) -> S3ProofStore:
        """A store over a boto3 client; credentials come from the usual AWS chain unless
        given. Nothing is contacted until the first call."""
        return cls(s3_client(endpoint_url=endpoint_url, region=region, **credentials), bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests; production has one)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=check_key(key),
                Body=data,
                ContentType=content_type,
                IfNoneMatch="*",
            )
        except ClientError as e:
            if _status(e) in (409, 412):  # exists, or a concurrent conditional write
                raise ProofExists(f"a proof is already stored at {key}") from None
            raise

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as e:
            if _status(e) == 404:
                raise ProofMissing(f"no proof stored at {key}") from None
            raise
        body: bytes = found["Body"].read()
        return body

    def url_for(self, key: str, expires_seconds: int = 300) -> str | None:
        seconds = max(1, min(expires_seconds, PRESIGNED_SECONDS_MAX))
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=seconds,
        )
        return url

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def uploaded_at(self, key: str) -> datetime | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as e:
            if _status(e) == 404:
                return None
            raise
        modified: datetime = head["LastModified"]
        return modified


def s3_client(
    *, endpoint_url: str | None = None, region: str = "us-east-1", **credentials: str
) -> Any:
    """A boto3 S3 client (SigV4, three attempts); credentials from the AWS chain unless given."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3}),
        **credentials,
    )


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class StorageSettings(Protocol):
    """The part of the API's settings that chooses the store."""

    storage: str
    storage_dir: Path
    s3_bucket: str
    s3_endpoint_url: str
    aws_region: str


def build_proof_store(config: StorageSettings) -> LocalProofStore | S3ProofStore:
    """The store ``STORAGE`` names: ``local`` (``STORAGE_DIR``) or ``s3`` (``S3_BUCKET``)."""
    if config.storage == "local":
        return LocalProofStore(config.storage_dir)
    if config.storage == "s3":
        return S3ProofStore.connect(
            config.s3_bucket, endpoint_url=config.s3_endpoint_url, region=config.aws_region
        )
    raise RuntimeError(f"unknown STORAGE {config.storage!r}: use local or s3")


# Both stores are the whole port (checked by mypy): the application never needs to know
# which one it holds.
_LOCAL_IS_A_PROOF_STORE: type[ProofStore] = LocalProofStore
_S3_IS_A_PROOF_STORE: type[ProofStore] = S3ProofStore
