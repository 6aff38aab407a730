"""Publishing the chain head outside the database (``CHAIN_HEAD_EXPORT``): a file or an S3
object holding one JSON document, replaced after each clean audit.

``{"head": "POSITION:HEX", "position": N, "events": N, "published_at": "..."}`` — ``head`` is
what ``peerpush audit verify --expect-head`` takes. The file is replaced atomically (written
aside, then renamed), so a reader never sees half a document. Keep older heads where the
database's owners cannot rewrite them: S3 versioning with Object Lock, or a copied file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from adapters.proof_store import s3_client
from application.watch import HeadExport


class FileHeadExport:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = path.as_uri()

    def publish(self, document: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".head-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(dict(document), f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def latest(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return found


class S3HeadExport:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.target = f"s3://{bucket}/{key}"

    def publish(self, document: Mapping[str, Any]) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=(json.dumps(dict(document), indent=2) + "\n").encode(),
            ContentType="application/json",
        )

    def latest(self) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        document: dict[str, Any] = json.loads(found["Body"].read())
        return document


def build_head_export(
    target: str, *, endpoint_url: str = "", region: str = "us-east-1"
) -> HeadExport | None:
    """The export ``CHAIN_HEAD_EXPORT`` names (``file:///path``, ``s3://bucket/key``), or None.

    S3 is reached like the proof store (``S3_ENDPOINT_URL``, ``AWS_REGION``, the AWS chain's
    credentials); nothing is contacted until the first audit.
    """
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme == "file" and parsed.path:
        return FileHeadExport(Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.netloc and parsed.path.strip("/"):
        client = s3_client(endpoint_url=endpoint_url, region=region)
        return S3HeadExport(client, parsed.netloc, parsed.path.lstrip("/"))
    raise ValueError(f"CHAIN_HEAD_EXPORT must be file:///path or s3://bucket/key: {target!r}")


# Both are the whole port (checked by mypy).
_FILE_IS_AN_EXPORT: type[HeadExport] = FileHeadExport
_S3_IS_AN_EXPORT: type[HeadExport] = S3HeadExport
