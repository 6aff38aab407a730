"""``GET /v1/audit/events`` gives each stored event exactly as ``audit export`` writes it, so
an auditor can check one against the other."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from api.bootstrap import Services
from projections.audit.export import export
from tests.api.conftest import Account, bearer


def test_the_audit_feed_pages_through_the_events_as_the_export_writes_them(
    api_client: TestClient,
    api_services: Services,
    admin_token: str,
    register_user: Callable[..., Account],
) -> None:
    user = register_user()
    for tokens in (30, 40):
        credited = api_client.post(
            "/v1/admin/adjustments",
            json={"user_id": str(user.id), "direction": "credit", "tokens": tokens, "reason": "x"},
            headers=bearer(admin_token),
        )
        assert credited.status_code == 201, credited.text

    out = io.StringIO()
    ledger = api_services.ledger
    export(api_services.db, ledger.mapper.to_domain_event, out, what="events", fmt="jsonl")
    exported = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(exported) >= 2

    fed, after = [], 0
    while True:
        page = api_client.get(
            "/v1/audit/events", params={"after": after, "limit": 1}, headers=bearer(admin_token)
        )
        assert page.status_code == 200, page.text
        fed += page.json()["items"]
        if page.json()["next_after"] is None:
            break
        after = page.json()["next_after"]
    assert fed == exported
