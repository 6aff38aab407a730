"""The tamper-evidence hash chain over the event stream (rules §8), kept as a read model.

``h_0`` is 32 zero bytes and, for each stored event in position order,

    h_n = SHA-256(h_{n-1} ‖ position (8 bytes BE) ‖ originator id (16 bytes) ‖ version (8 bytes
          BE) ‖ len(topic) (4 bytes BE) ‖ topic (UTF-8) ‖ len(state) (4 bytes BE) ‖ state)

over the bytes exactly as stored. ``chain_head`` holds the running value; ``chain_checkpoints``
one row per multiple of :data:`CHECKPOINT_EVERY`. Positions may have gaps, so the checkpoint
``k × 1,000`` is the chain value after the last event whose position is at most ``k × 1,000``
(``last_event`` names it; several checkpoints share a value when a gap spans them). It is
recorded as soon as the chain reaches that position or passes it, which is final because
positions are committed in order (the event store serialises inserts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from projections.base import Positioned, copy_rows

CHECKPOINT_EVERY = 1_000
GENESIS = bytes(32)
CHECKPOINT_COLUMNS = ("position", "last_event", "events", "hash")


def link(
    previous: bytes, position: int, originator_id: UUID, version: int, topic: str, state: bytes
) -> bytes:
    """The next chain value: rules §8's byte encoding of one stored event."""
    topic_bytes = topic.encode()
    return hashlib.sha256(
        b"".join(
            (
                previous,
                position.to_bytes(8, "big"),
                originator_id.bytes,
                version.to_bytes(8, "big"),
                len(topic_bytes).to_bytes(4, "big"),
                topic_bytes,
                len(state).to_bytes(4, "big"),
                state,
            )
        )
    ).digest()


@dataclass(slots=True)
class Checkpoint:
    position: int
    last_event: int
    events: int
    hash: bytes


@dataclass(slots=True)
class Chain:
    """The running chain: the last position chained, how many events, and the value."""

    position: int = 0
    events: int = 0
    hash: bytes = GENESIS

    def append(
        self, position: int, originator_id: UUID, version: int, topic: str, state: bytes
    ) -> list[Checkpoint]:
        """Chain one event; returns the checkpoints this event completes (usually none).

        Checkpoints strictly below ``position`` that the chain had not reached are completed
        by it with the value before it; a position that is itself a multiple completes its own.
        """
        if position <= self.position:
            raise ValueError(f"position {position} is not after {self.position}")
        done = []
        boundary = (self.position // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
        while boundary < position:
            done.append(Checkpoint(boundary, self.position, self.events, self.hash))
            boundary += CHECKPOINT_EVERY
        self.hash = link(self.hash, position, originator_id, version, topic, state)
        self.position = position
        self.events += 1
        if position % CHECKPOINT_EVERY == 0:
            done.append(Checkpoint(position, position, self.events, self.hash))
        return done


class ChainProjection:
    """Keeps ``chain_head`` and ``chain_checkpoints`` in step with the stream."""

    name = "chain"
    tables = ("chain_checkpoints", "chain_head")

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        if not events:
            return
        cur.execute("SELECT position, events, hash FROM chain_head WHERE id = 1")
        row = cur.fetchone()
        chain = Chain(int(row[0]), int(row[1]), bytes(row[2])) if row else Chain()
        done: list[Checkpoint] = []
        for p in events:
            n = p.notification
            if n is None:
                raise ValueError("the chain needs the stored notification of every event")
            done += chain.append(
                p.position, n.originator_id, n.originator_version, n.topic, n.state
            )
        copy_rows(
            cur,
            "chain_checkpoints",
            CHECKPOINT_COLUMNS,
            [(c.position, c.last_event, c.events, c.hash) for c in done],
        )
        cur.execute(
            "INSERT INTO chain_head (id, position, events, hash) VALUES (1, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, "
            "events = EXCLUDED.events, hash = EXCLUDED.hash",
            (chain.position, chain.events, chain.hash),
        )
