"""``audit verify`` counts cash-outs (rules §8): held tokens in ``cashout_pending``, transfers
in ``stripe:transfers`` net of reversals, the read models and journal agreeing with the replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.aggregate import Cause
from tests.audit.support import Audited
from tests.audit.support import verify_json as verify

ADMIN = Cause.admin("00000000-0000-4000-8000-0000000000ad")
WORKER = Cause.worker("cashouts")


def test_a_stream_with_cash_outs_verifies_clean_and_counts_them(
    audited: Audited, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, user = audited.ledger, uuid4()
    ledger.adjust(user, "credit", 10_000, "prize", uuid4(), ADMIN)
    audited.clock.advance(timedelta(days=8))
    paid, failed, waiting = uuid4(), uuid4(), uuid4()
    ledger.request_cashout(user, paid, 3_000, Cause.user(user))
    ledger.settle_cashout(user, paid, "tr_1", WORKER)
    ledger.reverse_cashout(user, paid, "trr_1", 1_000, Cause.stripe("evt_rev"))
    ledger.request_cashout(user, failed, 2_000, Cause.user(user))
    ledger.fail_cashout(user, failed, "account_closed", WORKER)
    ledger.request_cashout(user, waiting, 1_500, Cause.user(user))
    audited.projector.catch_up()

    code, report = verify(audited.db, capsys, monkeypatch)

    assert code == 0, report["findings"]
    totals: dict[str, Any] = report["totals"]
    assert (totals["cashed_out"], totals["cashout_pending"]) == (2_000, 1_500)
    assert totals["credited"] == totals["accounted"]
    assert report["accounts"]["stripe:transfers"] == 2_000
    assert report["accounts"]["user:cashout_pending"] == 1_500
