"""What every Stripe webhook endpoint shares: its documentation and how a delivery is answered.

A bad signature is 400 and records nothing; an event about something not recorded yet is 503
with ``Retry-After``, so Stripe delivers it again (decision 34); anything else is applied by the
application and answered 200 with what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from api.errors import ApiError
from application.ports import InvalidWebhook, PaymentUnavailable, RetryLater

RETRY_WEBHOOK_SECONDS = "60"

WEBHOOK_DOCS: dict[str, Any] = {
    "responses": {
        400: {"description": "missing, wrong or stale Stripe-Signature: nothing recorded"},
        503: {"description": "the event refers to something not recorded yet: redeliver"},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
}


class WebhookReceived(BaseModel):
    received: bool
    event_id: str
    outcome: str = Field(description="what was done: credited, duplicate, payouts_enabled, …")


def deliver(
    verify: Callable[[bytes, str], Mapping[str, Any]],
    handle: Callable[[Mapping[str, Any]], str],
    payload: bytes,
    signature: str,
) -> WebhookReceived:
    """Verify one delivery and apply it: the event's id and what the application did."""
    try:
        event = verify(payload, signature)
    except InvalidWebhook as e:
        raise ApiError(400, "invalid_signature", f"webhook refused: {e}") from None
    try:
        outcome = handle(event)
    except (RetryLater, PaymentUnavailable) as e:
        raise ApiError(
            503, "retry_later", str(e), headers={"Retry-After": RETRY_WEBHOOK_SECONDS}
        ) from None
    return WebhookReceived(received=True, event_id=str(event.get("id", "")), outcome=outcome)
