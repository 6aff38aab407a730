"""``peerpush``: the ledger's command line.

``peerpush migrate`` creates the event store's tables; ``peerpush run`` (``make run``) plays a
short scripted scenario on the configured database and prints the balances — the HTTP API
will take its place (issue 4).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from api.bootstrap import build_ledger, database_settings
from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from domain.verification import ProofFacts


def migrate(_: argparse.Namespace) -> int:
    db = database_settings()
    build_ledger(db).close()
    print(f"event store ready in schema {db.schema!r}")
    return 0


def run(_: argparse.Namespace) -> int:
    """A four-player challenge played in seconds on a test clock, then the balances."""
    clock = AdjustableClock(datetime.now(UTC).replace(microsecond=0), frozen=True)
    ledger = build_ledger(clock=clock)
    try:
        _scenario(ledger, clock)
    finally:
        ledger.close()
    return 0


def _scenario(ledger: Ledger, clock: AdjustableClock) -> None:
    names = ["ada", "bo", "cy", "di"]
    users = {name: uuid4() for name in names}
    for name, user in users.items():
        ledger.credit_deposit(user, f"pi_demo_{user.hex[:12]}", 5_000, Cause.stripe("evt_demo"))
    start = clock.now().replace(hour=0, minute=0, second=0) + timedelta(days=1)
    ada = users["ada"]
    created = ledger.create_challenge(
        ada,
        Cause.user(ada),
        name="Three mornings of running",
        starts_at=start,
        ends_at=start + timedelta(days=3),
        entry_stake=1_000,
        window_start="00:00",
        window_end="00:00",
        timezone="UTC",
        verification_mode="quorum",
        penalty_tokens=200,
        proof_types=["text"],
    )
    ledger.publish(created.challenge_id, ada, Cause.user(ada))
    for name in names[1:]:
        ledger.join(created.invite_code, users[name], "UTC", Cause.user(users[name]))
    print(f"challenge {created.invite_code}: 4 players staked 1,000 tokens each")

    proof = ProofFacts("text", "demo", "text/plain", 5, "")
    for day in range(3):
        clock.set(start + timedelta(days=day, hours=8))
        for name in ("ada", "bo", "cy"):
            made = ledger.submit(created.challenge_id, users[name], proof, Cause.user(users[name]))
            for voter in names:
                if voter == name:
                    continue
                approve = not (name == "cy" and day == 2)
                outcome = ledger.vote(made.submission_id, users[voter], approve,
                                      Cause.user(users[voter]))
                if outcome.status != "pending":
                    break
    clock.set(start + timedelta(days=4, hours=1))
    swept = ledger.settle_due()
    print(f"settled {len(swept.settled)} challenge(s) at position {swept.position}\n")
    _print_balances(ledger, users)


def _print_balances(ledger: Ledger, users: dict[str, UUID]) -> None:
    print(f"{'user':<6}{'available':>10}{'staked':>8}{'won':>6}{'forfeited':>10}{'penalised':>10}")
    for name, user in users.items():
        w = ledger.wallet_of(user)
        print(f"{name:<6}{w.available:>10}{w.staked:>8}{w.won:>6}{w.forfeited:>10}{w.penalised:>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peerpush", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create the event store's tables").set_defaults(func=migrate)
    commands.add_parser("run", help="play a scripted scenario, print balances").set_defaults(
        func=run
    )
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
