"""``audit verify``: replay the whole stream and report everything that does not add up.

One pass over the stored events, in batches, inside one read-only snapshot: each event is
chained (rules §8's hash chain, compared with the stored checkpoints and head), decoded and
applied to its wallet or challenge; each read model is compared with the replay at its own
position; at the end rules §8's invariants are checked on the replayed aggregates. Memory
holds the aggregates and one batch, whatever the length of the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, cast
from uuid import UUID

from eventsourcing.persistence import Notification

from adapters.persistence import DatabaseSettings
from projections.audit.chaincheck import ChainCheck, StoredChain, show
from projections.audit.compare import ReadModelChecks
from projections.audit.findings import Finding, ranked
from projections.audit.invariants import problems, totals
from projections.audit.replay import Replay, accounts, by_class
from projections.audit.stream import (
    BATCH,
    Progress,
    batches,
    has_table,
    head,
    prefetched,
    snapshot,
)


@dataclass
class Report:
    schema: str
    events: int = 0
    first: int = 0
    last: int = 0
    gaps: int = 0
    by_aggregate: dict[str, int] = field(default_factory=dict)
    wallets: int = 0
    challenges: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    head: str = ""
    stored_head: str | None = None
    checkpoints_compared: int = 0
    read_models: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "schema": self.schema,
            "events": self.events,
            "positions": {"first": self.first, "last": self.last, "gaps": self.gaps},
            "by_aggregate": self.by_aggregate,
            "wallets": self.wallets,
            "challenges": self.challenges,
            "accounts": self.accounts,
            "totals": self.totals,
            "chain": {
                "head": self.head,
                "stored_head": self.stored_head,
                "checkpoints_compared": self.checkpoints_compared,
            },
            "read_models_compared_at": self.read_models,
            "notes": self.notes,
            "findings": [f.as_dict() for f in self.findings],
        }

    def write_text(self, out: TextIO) -> None:
        w = out.write
        w(f"audit of schema {self.schema!r}\n")
        w(f"events        {self.events:,} (positions {self.first:,}..{self.last:,}, ")
        w(f"{self.gaps:,} unused)\n")
        kinds = ", ".join(f"{k.partition(':')[2]} {n:,}" for k, n in self.by_aggregate.items())
        w(f"by aggregate  {kinds or '-'}\n")
        status = ", ".join(f"{k} {n:,}" for k, n in self.challenges.items())
        w(f"wallets       {self.wallets:,}\nchallenges    {sum(self.challenges.values()):,}")
        w(f" ({status})\n" if status else "\n")
        w("accounts      (journal balances by class, tokens; they sum to 0)\n")
        for name, balance in self.accounts.items():
            w(f"  {name:<28}{balance:>16,}\n")
        w(f"  {'total':<28}{sum(self.accounts.values()):>16,}\n")
        t = self.totals
        if t:
            w(f"conservation  credited {t['credited']:,} = accounted {t['accounted']:,}\n")
        compared = ", ".join(f"{k}@{v:,}" for k, v in self.read_models.items())
        w(f"read models   compared: {compared or 'none'}\n")
        w(f"checkpoints   {self.checkpoints_compared:,} compared; stored head ")
        w(f"{self.stored_head or 'none'}\n")
        w(f"chain head    {self.head}\n")
        for note in self.notes:
            w(f"note          {note}\n")
        if self.clean:
            w("findings      none\n")
            return
        w(f"findings      {len(self.findings)}\n")
        for finding in self.findings:
            w(f"  - {finding}\n")

    def write_json(self, out: TextIO) -> None:
        json.dump(self.as_dict(), out, indent=2)
        out.write("\n")


def verify(
    db: DatabaseSettings,
    decode: Callable[[Notification], Any],
    *,
    expect_head: tuple[int, bytes] | None = None,
    progress: TextIO | None = None,
    batch_size: int = BATCH,
) -> Report:
    """Audit the stream in ``db`` (read-only); ``decode`` is the ledger's event mapper."""
    report = Report(db.schema)
    with snapshot(db) as conn:
        if not has_table(conn, "ledger_events"):
            report.findings.append(Finding("event", "no event store (ledger_events) here"))
            return report
        has_chain = has_table(conn, "chain_head")
        stored = StoredChain.load(conn) if has_chain else StoredChain(None, {})
        if not has_chain:
            report.notes.append("no stored chain (migration 0003 absent): chain not compared")
        elif stored.head is None:
            report.notes.append("the chain projection has not run: nothing stored to compare")
        chain = ChainCheck(stored, expect_head)
        checks = ReadModelChecks(conn)
        report.notes += checks.notes
        replay = Replay(
            decode,
            checks.coverage.see if checks.coverage else None,
            checks.transactions.see if checks.transactions else None,
        )
        bar = Progress(head(conn), "audit verify", progress)
        step, apply = chain.step, replay.apply
        compare_after = checks.next_at
        for batch in prefetched(batches(conn, size=batch_size)):
            for n in batch:
                position = n.id
                if position > compare_after:
                    checks.run_due(replay, before=position)
                    compare_after = checks.next_at
                # The PostgreSQL recorder decodes ids as UUIDs (the str case is other recorders').
                step(position, cast(UUID, n.originator_id), n.originator_version, n.topic, n.state)
                apply(n)
            bar.update(replay.events, batch[-1].id)
        bar.close()
        checks.finish(replay)
        chain.finish()
        replay.finish()
        report.findings += replay.findings
        report.findings += chain.findings(lambda lo, hi: gaps(conn, lo, hi))
        report.findings += checks.findings
    wallets, challenges = list(replay.wallets.values()), list(replay.challenges.values())
    report.findings += [Finding("invariant", p) for p in problems(wallets, challenges)]
    report.events, report.first, report.last = replay.events, replay.first, replay.last
    report.gaps = replay.gaps
    report.by_aggregate = dict(sorted(replay.by_aggregate.items()))
    report.wallets = len(wallets)
    statuses: dict[str, int] = {}
    for c in challenges:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    report.challenges = dict(sorted(statuses.items()))
    report.accounts = by_class(accounts(replay.wallets, replay.challenges))
    report.totals = totals(wallets, challenges).as_dict()
    report.head = chain.head
    report.stored_head = show(stored.head.position, stored.head.hash) if stored.head else None
    report.checkpoints_compared = sum(1 for p in chain.points if not p.is_head)
    report.read_models = checks.compared
    if stored.head and replay.last > stored.head.position:
        report.notes.append(
            f"positions after {stored.head.position:,} are not chained yet (projection lag): "
            "recomputed, not compared"
        )
    report.findings = ranked(report.findings)
    return report


def gaps(conn: Any, lo: int, hi: int) -> str:
    """The unused positions in (lo, hi], as ranges ("1203, 1500-1502"), or "" if none."""
    present = {
        r[0]
        for r in conn.execute(
            "SELECT notification_id FROM ledger_events WHERE notification_id > %s "
            "AND notification_id <= %s",
            (lo, hi),
        ).fetchall()
    }
    ranges: list[str] = []
    start = None
    for p in range(lo + 1, hi + 2):
        if p <= hi and p not in present:
            start = p if start is None else start
        elif start is not None:
            ranges.append(str(start) if start == p - 1 else f"{start}-{p - 1}")
            start = None
    return ", ".join(ranges)
