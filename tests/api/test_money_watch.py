"""The worker's scheduled audit and reconciliation (rules §8): each run exports its findings
as metrics, publishes the chain head outside the database (a file or an S3 object on moto's
server) after a clean audit, and checks the stream against the head published before — so a
database rewritten together with its stored chain is still caught.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.metrics import PROMETHEUS, REGISTRY
from adapters.persistence import DatabaseSettings
from adapters.proof_store import s3_client
from api.app import create_app
from api.bootstrap import Services, build_services, build_watch
from application.ports import AdjustableClock
from application.workers import audit_pass, reconcile_pass, run_every
from domain.aggregate import Cause
from projections.audit.verify import verify
from tests.api.conftest import api_config

Watched = Callable[..., Services]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def watched(pg_settings: DatabaseSettings, tmp_path: Path) -> Iterator[Watched]:
    """Services on a schema of this test's own, with the given settings."""
    built: list[Services] = []

    def build(**overrides: Any) -> Services:
        services = build_services(api_config(tmp_path / "proofs", **overrides), db=pg_settings)
        built.append(services)
        return services

    try:
        yield build
    finally:
        for services in built:
            services.close()


def pay(services: Services, tokens: int) -> uuid.UUID:
    """A user who bought ``tokens`` through the simulated checkout (Stripe knows the charge)."""
    with TestClient(create_app(services, start_workers=False)) as client:
        email = f"w_{uuid.uuid4().hex[:10]}@example.com"
        made = client.post(
            "/v1/auth/register",
            json={"email": email, "username": f"w{uuid.uuid4().hex[:8]}", "password": "pw" * 8},
        )
        token = client.post("/v1/auth/login", json={"email": email, "password": "pw" * 8})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        urls = {"success_url": "http://127.0.0.1:8000/ok", "cancel_url": "http://127.0.0.1:8000/no"}
        opened = client.post(
            "/v1/wallet/deposits", json={"tokens": tokens, **urls}, headers=headers
        )
        page = "/v1/" + opened.json()["checkout_url"].split("/v1/", 1)[1]
        assert client.post(f"{page}/pay", follow_redirects=False).status_code == 303
    services.projector.catch_up()
    return uuid.UUID(made.json()["id"])


def forge_first_deposit(db: DatabaseSettings, services: Services) -> None:
    """What someone with the database's keys could do: edit an event and rebuild the chain."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{db.schema}"')
        position, state = conn.execute(
            "SELECT notification_id, state FROM ledger_events WHERE topic LIKE %s "
            "ORDER BY notification_id LIMIT 1",
            ("%DepositCredited%",),
        ).fetchone()
        forged = bytes(state).replace(b'"cents_paid":500', b'"cents_paid":900')
        assert forged != bytes(state)
        conn.execute(
            "UPDATE ledger_events SET state = %s WHERE notification_id = %s", (forged, position)
        )
    services.projector.rebuild(["chain"])


def test_a_clean_audit_exports_its_metrics_and_publishes_the_head_it_computed(
    watched: Watched, tmp_path: Path
) -> None:
    published = tmp_path / "published" / "head.json"
    services = watched(chain_head_export=published.as_uri())
    pay(services, 500)
    clean_before = sample("peerpush_audit_runs_total", result="clean")

    run = audit_pass(build_watch(services), PROMETHEUS)

    assert run is not None and run.findings == 0 and run.published
    report = verify(services.db, services.ledger.mapper.to_domain_event)
    document = json.loads(published.read_text())
    assert document["head"] == report.head == run.head  # what `audit verify` prints
    assert document["position"] == run.position == services.ledger.head()
    assert sample("peerpush_audit_findings") == 0
    assert sample("peerpush_audit_chain_head_position") == run.position
    assert sample("peerpush_audit_runs_total", result="clean") == clean_before + 1
    assert sample("peerpush_audit_duration_seconds") > 0


def test_a_rewritten_database_is_caught_by_the_published_head_which_it_cannot_replace(
    watched: Watched, pg_settings: DatabaseSettings, tmp_path: Path
) -> None:
    published = tmp_path / "head.json"
    services = watched(chain_head_export=published.as_uri())
    pay(services, 500)
    watch = build_watch(services)
    first = audit_pass(watch, PROMETHEUS)
    assert first is not None and first.findings == 0
    pay(services, 300)
    forge_first_deposit(pg_settings, services)
    # The stored chain was rewritten to fit: on its own, the audit sees nothing wrong.
    assert verify(services.db, services.ledger.mapper.to_domain_event).clean

    run = audit_pass(watch, PROMETHEUS)

    assert run is not None and run.expected == first.head
    assert run.findings >= 1 and not run.published
    assert sample("peerpush_audit_findings") == run.findings  # the alert's expression is > 0
    assert json.loads(published.read_text())["head"] == first.head  # the proof is kept


def test_the_head_goes_to_an_s3_object_and_the_next_audit_checks_against_it(
    watched: Watched, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"heads-{uuid.uuid4().hex[:10]}"
        client = s3_client(endpoint_url=endpoint)
        client.create_bucket(Bucket=bucket)
        services = watched(
            chain_head_export=f"s3://{bucket}/ledger/head.json", s3_endpoint_url=endpoint
        )
        pay(services, 500)
        watch = build_watch(services)

        first = audit_pass(watch, PROMETHEUS)
        stored = json.loads(client.get_object(Bucket=bucket, Key="ledger/head.json")["Body"].read())
        pay(services, 200)
        second = audit_pass(watch, PROMETHEUS)
    finally:
        server.stop()

    assert first is not None and first.expected is None and first.published
    assert stored["head"] == first.head
    assert second is not None and second.expected == first.head and second.findings == 0
    assert second.position > first.position


def test_reconcile_counts_a_deposit_stripe_never_saw_as_a_mismatch(watched: Watched) -> None:
    services = watched()
    user = pay(services, 400)
    watch = build_watch(services)
    # The run leaves out the last half hour (webhooks on their way): look from an hour on.
    watch.clock = AdjustableClock(services.clock.now() + timedelta(hours=1))
    ok_before = sample("peerpush_reconcile_runs_total", result="ok")

    clean = reconcile_pass(watch, PROMETHEUS)
    services.ledger.credit_deposit(user, "pi_nobody_paid", 1_000, Cause.stripe("evt_forged"))
    found = reconcile_pass(watch, PROMETHEUS)

    assert clean is not None and clean.mismatches == 0
    assert sample("peerpush_reconcile_runs_total", result="ok") == ok_before + 1
    assert found is not None and found.mismatches == 1
    assert sample("peerpush_reconcile_mismatches") == 1


def test_a_failing_run_is_logged_and_counted_and_the_worker_goes_on(
    watched: Watched, tmp_path: Path
) -> None:
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    services = watched(chain_head_export=unreadable.as_uri())  # reading the head fails
    watch = build_watch(services)
    stop = threading.Event()
    calls: list[str] = []
    errors_before = sample("peerpush_audit_runs_total", result="error")
    failures_before = sample("peerpush_worker_pass_failures_total", worker="audit")

    def task() -> object:
        calls.append("audit")
        if len(calls) == 2:
            stop.set()
        return audit_pass(watch, PROMETHEUS)

    run_every("audit", task, 0.0, stop, PROMETHEUS)

    assert len(calls) == 2  # the first failure did not end the loop
    assert sample("peerpush_audit_runs_total", result="error") == errors_before + 2
    assert sample("peerpush_worker_pass_failures_total", worker="audit") == failures_before + 2


def test_the_worker_runs_audit_and_reconcile_on_their_own_schedules(watched: Watched) -> None:
    services = watched(audit_every=timedelta(minutes=30), reconcile_every=timedelta(hours=2))
    config = services.config
    assert config.worker_interval("audit") == 1800 and config.worker_interval("reconcile") == 7200
    assert config.worker_interval("settlement") == config.worker_interval_seconds

    off = dataclasses.replace(
        services, config=config.model_copy(update={"audit_every": timedelta(0)})
    )
    workers = off.workers(("audit", "reconcile"), projections=False)
    workers.stop.set()  # the loops end at once: only which threads exist is looked at
    workers.start()
    workers.shutdown()
    assert [t.name for t in workers.threads] == ["peerpush-reconcile"]
