"""What an audit found: each finding names its kind and where to look."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = {
    "expect_head": "the stream differs from a head an earlier audit printed",
    "chain": "the stored stream differs from the chain recorded over it",
    "chain_row": "a row of the stored chain itself is missing or altered",
    "event": "a stored event cannot be decoded or does not apply to its aggregate",
    "invariant": "a rules §8 invariant does not hold on the replayed aggregates",
    "read_model": "a stored read-model row differs from the replayed stream",
    "journal": "the stored journal does not balance or misses a money event",
}


ORDER = {kind: n for n, kind in enumerate(KINDS)}


def ranked(findings: list[Finding]) -> list[Finding]:
    """The chain first (what changed), then events, invariants, read models, the journal."""
    return sorted(findings, key=lambda f: ORDER.get(f.kind, len(ORDER)))


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    position: int | None = None
    interval: tuple[int, int] | None = None
    row: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = f"position {self.position}: " if self.position is not None else ""
        return f"[{self.kind}] {where}{self.message}"
