"""rules §8's invariants, checked over every aggregate in a ledger's event store.

Property tests and integration tests call :func:`assert_ledger_invariants` after any
sequence of commands; a broken invariant names the wallet or challenge and the numbers. The
checks themselves live in :mod:`projections.audit.invariants`, which the audit runs over the
aggregates it replays from the stream.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.ledger import Ledger
from domain.challenge import Challenge
from domain.wallet import Wallet
from projections.audit.invariants import (
    LedgerTotals,
    challenge_problems,
    problems,
    wallet_problems,
)
from projections.audit.invariants import totals as totals_of

__all__ = [
    "LedgerTotals",
    "assert_ledger_invariants",
    "challenges",
    "check_challenge",
    "check_wallet",
    "totals",
    "wallets",
]


def all_of(app: Ledger, cls: type, created_topic: str) -> list[Any]:
    ids: list[UUID] = [n.originator_id for n in app._notifications((created_topic,))]
    return [app.repository.get(i) for i in ids]


def wallets(app: Ledger) -> list[Wallet]:
    return all_of(app, Wallet, Wallet.Opened.TOPIC)


def challenges(app: Ledger) -> list[Challenge]:
    return all_of(app, Challenge, Challenge.Drafted.TOPIC)


def check_wallet(w: Wallet) -> None:
    found = wallet_problems(w)
    assert not found, "\n".join(found)


def check_challenge(c: Challenge) -> None:
    found = challenge_problems(c)
    assert not found, "\n".join(found)


def totals(app: Ledger) -> LedgerTotals:
    return totals_of(wallets(app), challenges(app))


def assert_ledger_invariants(app: Ledger) -> LedgerTotals:
    """Every invariant of rules §8 that the aggregates can show; returns the totals."""
    ws, cs = wallets(app), challenges(app)
    found = problems(ws, cs)
    assert not found, "\n".join(found)
    return totals_of(ws, cs)
