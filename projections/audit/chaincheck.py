"""Recomputing the hash chain and comparing it with the stored one (rules §8).

The chain is cumulative, so a changed, inserted, deleted or reordered event makes every
checkpoint from its interval on differ. The first checkpoint that differs, when none after
it matches again, locates the change to that checkpoint's interval; a change after the last
checkpoint shows only in the stored head. A stored checkpoint that differs while later ones
match means the chain's own rows were altered. ``--expect-head`` compares with a head an
earlier audit printed, which holds even if the stored chain was rewritten to fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from projections.audit.findings import Finding
from projections.chain import CHECKPOINT_EVERY, Chain, Checkpoint


@dataclass(frozen=True)
class StoredChain:
    """What the chain projection recorded: its head and its checkpoints by position."""

    head: Checkpoint | None
    checkpoints: dict[int, Checkpoint]

    @classmethod
    def load(cls, conn: Any) -> StoredChain:
        row = conn.execute("SELECT position, events, hash FROM chain_head WHERE id = 1").fetchone()
        head = Checkpoint(int(row[0]), int(row[0]), int(row[1]), bytes(row[2])) if row else None
        rows = conn.execute(
            "SELECT position, last_event, events, hash FROM chain_checkpoints ORDER BY position"
        ).fetchall()
        return cls(
            head,
            {int(r[0]): Checkpoint(int(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows},
        )


@dataclass(frozen=True)
class Point:
    """One comparison: a checkpoint (or the head) as stored and as recomputed."""

    position: int
    is_head: bool
    stored: Checkpoint
    recomputed: Checkpoint

    @property
    def matches(self) -> bool:
        return (
            self.stored.hash == self.recomputed.hash
            and self.stored.events == self.recomputed.events
        )


def parse_head(text: str) -> tuple[int, bytes]:
    """``POSITION:HEX`` as printed by ``audit verify``."""
    position, _, digest = text.partition(":")
    value = bytes.fromhex(digest)
    if not position.isdigit() or len(value) != 32:
        raise ValueError("expected POSITION:HEX (a position and 64 hex digits)")
    return int(position), value


def show(position: int, digest: bytes) -> str:
    return f"{position}:{digest.hex()}"


class ChainCheck:
    """Feeds every stored event into a fresh chain and compares as it goes."""

    def __init__(self, stored: StoredChain, expect: tuple[int, bytes] | None = None) -> None:
        self.stored = stored
        self.expect = expect
        self.chain = Chain()
        self.points: list[Point] = []
        self.missing_rows: list[int] = []
        self.head_limit = stored.head.position if stored.head else 0
        # Positions at which the chain's value is needed (stored head, expected head).
        marks = {p for p in (self.head_limit, expect[0] if expect else 0) if p > 0}
        self._marks = sorted(marks)
        self._captured: dict[int, Checkpoint] = {}

    def step(
        self, position: int, originator_id: UUID, version: int, topic: str, state: bytes
    ) -> None:
        while self._marks and position > self._marks[0]:
            self._capture(self._marks.pop(0))
        for done in self.chain.append(position, originator_id, version, topic, state):
            self._compare(done)

    def finish(self) -> None:
        """The stream has ended: complete the checkpoints the stored chain went past."""
        chain = self.chain
        boundary = (chain.position // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
        while boundary <= self.head_limit:
            self._compare(Checkpoint(boundary, chain.position, chain.events, chain.hash))
            boundary += CHECKPOINT_EVERY
        for mark in self._marks:
            self._capture(mark)
        self._marks = []
        if self.stored.head is not None:
            value = self._captured[self.head_limit]
            self.points.append(Point(self.head_limit, True, self.stored.head, value))

    @property
    def head(self) -> str:
        return show(self.chain.position, self.chain.hash)

    def findings(self, gaps: Any) -> list[Finding]:
        """What the comparisons show; ``gaps(lo, hi)`` names the missing positions in (lo, hi]."""
        out = [
            Finding(
                "chain_row",
                f"checkpoint {p} is missing from chain_checkpoints",
                row=f"chain_checkpoints {p}",
            )
            for p in self.missing_rows
        ]
        beyond = [
            p for p in self.stored.checkpoints if p > max(self.head_limit, self.chain.position)
        ]
        if beyond:
            out.append(
                Finding(
                    "chain_row",
                    f"chain_checkpoints has rows beyond the head: {beyond[:5]}",
                    row="chain_checkpoints",
                )
            )
        out += self._runs(gaps)
        if self.expect is not None:
            position, value = self.expect
            got = self._captured[position]
            if got.hash != value:
                out.append(
                    Finding(
                        "expect_head",
                        f"the stream up to position {position} is not the one an earlier "
                        "audit saw: "
                        f"expected {value.hex()}, recomputed {got.hash.hex()} "
                        f"({got.events} events, last at {got.last_event})",
                        position=position,
                    )
                )
        return out

    # -- plumbing -----------------------------------------------------------------------

    def _capture(self, mark: int) -> None:
        c = self.chain
        self._captured[mark] = Checkpoint(mark, c.position, c.events, c.hash)

    def _compare(self, recomputed: Checkpoint) -> None:
        if recomputed.position > self.head_limit:
            return  # the chain projection has not got this far: lag, not a finding
        stored = self.stored.checkpoints.get(recomputed.position)
        if stored is None:
            self.missing_rows.append(recomputed.position)
            return
        self.points.append(Point(recomputed.position, False, stored, recomputed))

    def _runs(self, gaps: Any) -> list[Finding]:
        out: list[Finding] = []
        points = self.points
        i = 0
        while i < len(points):
            if points[i].matches:
                i += 1
                continue
            j = i
            while j + 1 < len(points) and not points[j + 1].matches:
                j += 1
            first = points[i]
            if j + 1 < len(points):
                last = points[j]
                out.append(
                    Finding(
                        "chain_row",
                        f"stored chain rows altered: checkpoint(s) {first.position}.."
                        f"{last.position} differ but the chain matches again after them",
                        row=f"chain_checkpoints {first.position}",
                    )
                )
            else:
                out.append(self._located(first, points[i - 1].position if i else 0, gaps))
            i = j + 1
        return out

    def _located(self, first: Point, lo: int, gaps: Any) -> Finding:
        hi = first.position
        missing = gaps(lo, hi)
        delta = first.recomputed.events - first.stored.events
        counted = (
            f"; {-delta} event(s) fewer than when chained"
            if delta < 0
            else f"; {delta} event(s) more than when chained"
            if delta > 0
            else ""
        )
        gap_text = f"; gaps in it: {missing}" if missing else "; no gaps in it"
        where = (
            f"in checkpoint interval ({lo}, {hi}]"
            if not first.is_head
            else f"after the last checkpoint ({lo}), up to the stored head {hi}"
        )
        return Finding(
            "chain",
            f"the stream was changed {where}: an event was edited, inserted, deleted or "
            f"reordered{counted}{gap_text}",
            interval=(lo, hi),
        )
