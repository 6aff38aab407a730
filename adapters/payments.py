"""PLACEHOLDER — being written (Stripe gateway, simulated Stripe)."""

from __future__ import annotations

from typing import Any


def build_payment_gateway(config: Any, users: Any) -> Any:
    return None
