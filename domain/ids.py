"""Deterministic identities.

Where uniqueness matters (one wallet per user, one credit per PaymentIntent, one submission
per participant and slot) the id is derived from what makes the thing unique, so a duplicate
fails in the event store on its first version instead of needing a read to detect.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6b1f0a52-93c4-4d8e-9a57-1d2c7e4b5f30")


@lru_cache(maxsize=65_536)  # every wallet command derives it; a SHA-1 and a UUID each time
def wallet_id(user_id: UUID) -> UUID:
    return uuid5(NAMESPACE, f"wallet:{user_id}")


def deposit_lot_id(payment_intent_id: str) -> UUID:
    return uuid5(NAMESPACE, f"deposit:{payment_intent_id}")


def payout_lot_id(challenge_id: UUID, user_id: UUID) -> UUID:
    return uuid5(NAMESPACE, f"payout:{challenge_id}:{user_id}")


def adjustment_lot_id(adjustment_id: UUID) -> UUID:
    return uuid5(NAMESPACE, f"adjustment:{adjustment_id}")


def submission_id(challenge_id: UUID, user_id: UUID, slot: str) -> UUID:
    return uuid5(challenge_id, f"submission:{user_id}:{slot}")


def invite_code_id(code: str) -> UUID:
    return uuid5(NAMESPACE, f"invite:{code}")


def erasure_withdrawal_id(wallet_id: UUID, version: int) -> UUID:
    """The refund of a closed wallet's lots requested at this wallet version: two copies of
    the worker acting on the same state choose the same id (and only one save succeeds)."""
    return uuid5(NAMESPACE, f"erasure:{wallet_id}:{version}")


def used_id(wallet_id: UUID, kind: str, key: str) -> UUID:
    """The marker of a request id a wallet acted on (``domain.used_ids``): one per wallet,
    kind and id, so a repeat finds it, or collides with it in the event store."""
    return uuid5(NAMESPACE, f"used:{kind}:{wallet_id}:{key}")
