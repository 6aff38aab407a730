"""``challenge_summaries`` and ``challenge_participants`` (rules §3, §5).

Status, pool, participants, stakes, penalties, finishers and how the pool ended, for every
challenge; and per participant its stake, penalties and, once settled, its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from domain.challenge import Challenge
from projections.base import Positioned, fetch_by, upsert, uuid_order, with_topic_prefix

C = Challenge
TERMS = (
    "name",
    "visibility",
    "starts_at",
    "ends_at",
    "entry_stake",
    "max_participants",
    "frequency",
    "timezone",
    "verification_mode",
    "penalty_tokens",
)


class ChallengesProjection:
    name = "challenges"
    tables = ("challenge_participants", "challenge_summaries")

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        mine = with_topic_prefix(events, "peerpush:Challenge.")
        if not mine:
            return
        ids = {p.originator_id for p in mine}
        rows = {
            r["challenge_id"]: r for r in fetch_by(cur, "challenge_summaries", "challenge_id", ids)
        }
        members = {
            (r["challenge_id"], r["user_id"]): r
            for r in fetch_by(cur, "challenge_participants", "challenge_id", ids)
        }
        touched: set[UUID] = set()
        touched_members: set[tuple[UUID, UUID]] = set()
        for p in mine:
            e, cid = p.event, p.originator_id
            touched.add(cid)
            if isinstance(e, C.Drafted):
                rows[cid] = {
                    "challenge_id": cid,
                    "owner_id": e.owner_id,
                    "invite_code": e.invite_code,
                    **{k: e.terms[k] for k in TERMS},
                    "status": "draft",
                    "participants": 0,
                    "stakes": 0,
                    "penalties": 0,
                    "pool": 0,
                    "finishers": 0,
                    "fee": 0,
                    "forfeited": 0,
                    "returned": 0,
                    "paid_out": 0,
                    "outcome": None,
                    "created_at": p.at,
                    "published_at": None,
                    "closed_at": None,
                }
            row = rows[cid]
            row["last_position"] = p.position
            if isinstance(e, C.Edited):
                row.update({k: e.terms[k] for k in TERMS})
            elif isinstance(e, C.Published):
                row["status"], row["published_at"] = "active", p.at
            elif isinstance(e, C.Joined):
                row["participants"] += 1
                row["stakes"] += e.stake
                row["pool"] += e.stake
                members[(cid, e.user_id)] = {
                    "challenge_id": cid,
                    "user_id": e.user_id,
                    "timezone": e.timezone,
                    "stake": e.stake,
                    "penalties": 0,
                    "joined_at": p.at,
                    "expected": None,
                    "accepted": None,
                    "finished": None,
                    "share": None,
                }
                touched_members.add((cid, e.user_id))
            elif isinstance(e, C.SubmissionDecided) and e.penalty:
                row["penalties"] += e.penalty
                row["pool"] += e.penalty
                members[(cid, e.user_id)]["penalties"] += e.penalty
                touched_members.add((cid, e.user_id))
            elif isinstance(e, C.Cancelled):
                row.update(
                    status="cancelled",
                    pool=0,
                    outcome="cancelled",
                    closed_at=p.at,
                    returned=e.stakes_returned + e.penalties_returned,
                )
            elif isinstance(e, C.Settled):
                finishers = 0
                for user_id, expected, accepted, finished, _stake, share in e.results:
                    key = (cid, UUID(str(user_id)))
                    members[key].update(
                        expected=expected, accepted=accepted, finished=finished, share=share
                    )
                    touched_members.add(key)
                    finishers += bool(finished)
                row.update(
                    status="settled",
                    pool=0,
                    fee=e.fee,
                    forfeited=e.forfeited,
                    returned=e.returned,
                    paid_out=e.paid_out,
                    finishers=finishers,
                    outcome="paid_out" if finishers else "forfeited",
                    closed_at=p.at,
                )
        upsert(
            cur,
            "challenge_summaries",
            ("challenge_id",),
            [rows[i] for i in sorted(touched, key=uuid_order)],
        )
        upsert(
            cur,
            "challenge_participants",
            ("challenge_id", "user_id"),
            [members[k] for k in sorted(touched_members, key=_member_order)],
        )


def _member_order(key: tuple[UUID, UUID]) -> tuple[int, int]:
    return key[0].int, key[1].int
