"""The scripted scenario of ``make demo``: a four-player challenge on a test clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TextIO
from uuid import UUID, uuid4

from application.ledger import Ledger
from application.ports import AdjustableClock
from domain.aggregate import Cause
from domain.values import SubmissionStatus
from domain.verification import ProofFacts


def play(ledger: Ledger, clock: AdjustableClock) -> dict[str, UUID]:
    """Deposit, stake, submit, review (one rejection with a penalty), settle."""
    names = ["ada", "bo", "cy", "di"]
    users = {name: uuid4() for name in names}
    for user in users.values():
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
                outcome = ledger.vote(
                    made.submission_id, users[voter], approve, Cause.user(users[voter])
                )
                if outcome.status != SubmissionStatus.PENDING:
                    break
    clock.set(start + timedelta(days=4, hours=1))
    swept = ledger.settle_due()
    print(f"settled {len(swept.settled)} challenge(s) at position {swept.position}\n")
    return users


def write_balances(
    users: Mapping[str, UUID], rows: Mapping[UUID, Mapping[str, Any]], out: TextIO
) -> None:
    """Each player's balances after the scenario, as a table (from the wallets read model)."""
    out.write(
        f"{'user':<6}{'available':>10}{'staked':>8}{'won':>6}{'forfeited':>10}{'penalised':>10}\n"
    )
    for name, user in users.items():
        r = rows[user]
        out.write(
            f"{name:<6}{r['available']:>10}{r['staked']:>8}{r['won']:>6}"
            f"{r['forfeited']:>10}{r['penalised']:>10}\n"
        )
