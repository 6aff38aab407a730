"""The hash chain (rules §8): its byte encoding, its checkpoints across gaps, and the
projection that keeps it."""

from __future__ import annotations

import hashlib
from uuid import UUID

from projections.audit.replay import MONEY_TOPICS
from projections.chain import GENESIS, Chain, link
from projections.journal import MONEY_EVENTS
from tests.audit.support import Audited, bulk, connect, skip_positions

OID = UUID("00112233-4455-6677-8899-aabbccddeeff")


def test_a_link_hashes_the_previous_value_and_the_stored_row_as_spec_section_8_lays_it_out():
    state = b'{"tokens":5}'
    expected = hashlib.sha256(
        bytes(32)
        + (7).to_bytes(8, "big")
        + bytes.fromhex("00112233445566778899aabbccddeeff")
        + (3).to_bytes(8, "big")
        + (len("peerpush:Wallet.X")).to_bytes(4, "big")
        + b"peerpush:Wallet.X"
        + len(state).to_bytes(4, "big")
        + state
    ).digest()
    assert link(GENESIS, 7, OID, 3, "peerpush:Wallet.X", state) == expected


def test_a_checkpoint_in_a_gap_holds_the_value_after_the_last_event_below_it():
    chain = Chain()
    done = []
    for position in (1, 2, 999):
        done += chain.append(position, OID, position, "t", b"")
    at_999 = chain.hash
    done += chain.append(2_500, OID, 4, "t", b"")
    assert [(c.position, c.last_event, c.events) for c in done] == [
        (1_000, 999, 3),
        (2_000, 999, 3),
    ]
    assert all(c.hash == at_999 for c in done)
    done = chain.append(3_000, OID, 5, "t", b"")
    assert [(c.position, c.last_event, c.events, c.hash) for c in done] == [
        (3_000, 3_000, 5, chain.hash)
    ]


def test_the_chain_projection_keeps_the_head_and_a_checkpoint_every_thousand_positions(
    audited: Audited,
):
    bulk(audited, 150)
    skip_positions(audited.db, 5)
    bulk(audited, 150, tag="b")
    audited.projector.catch_up()
    with connect(audited.db) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM ledger_events ORDER BY notification_id"
        ).fetchall()
        head = conn.execute("SELECT position, events, hash FROM chain_head").fetchone()
        checkpoints = conn.execute(
            "SELECT position, events, hash FROM chain_checkpoints ORDER BY position"
        ).fetchall()
    chain, expected = Chain(), []
    for row in rows:
        expected += chain.append(*row)
    assert head == (chain.position, chain.events, chain.hash)
    assert checkpoints == [(c.position, c.events, c.hash) for c in expected]
    assert [c[0] for c in checkpoints] == [1_000, 2_000]


def test_the_audit_and_the_journal_agree_on_which_events_move_money():
    assert {cls.TOPIC for cls in MONEY_EVENTS} == MONEY_TOPICS
