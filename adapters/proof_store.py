"""PLACEHOLDER — being written (local directory and S3 proof storage)."""

from __future__ import annotations

from typing import Any


def build_proof_store(config: Any) -> Any:
    return None
