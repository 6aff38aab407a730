"""The container topology (Dockerfile, deploy/) checked without a Docker daemon: the files
parse, every command is one the real ``peerpush`` parser accepts, every variable is a typed
setting whose value the settings accept, and every metric the dashboard and the alert rules
query is one a running app exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from adapters.settings import ProcessSettings, ServiceSettings
from api.cli import parser
from tests.api.conftest import Account
from tests.api.test_deposits_simulated import checkout, local_path
from tests.unit.test_settings_doc import variables_in_code

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Read by libraries, not by our settings: boto3's credentials.
THIRD_PARTY = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
PLACEHOLDER = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def ledger_services() -> dict[str, dict[str, Any]]:
    """The services that run our image: their command starts with ``peerpush``."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("command", [""])[0] == "peerpush"
    }


def example_env() -> dict[str, str]:
    """deploy/env.example, its blanks filled as an operator would."""
    found = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            found[name] = value or "filled-in-secret-" + "x" * 32
    return found


def resolved(value: Any, env: dict[str, str]) -> str:
    """A compose value with ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` filled in."""

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        assert "?" not in match.group(0), f"{name} is required but not in env.example"
        return default or ""

    return PLACEHOLDER.sub(fill, str(value))


def test_the_topology_has_every_process_and_two_api_replicas_behind_the_proxy() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "api", "proxy", "worker", "projections"} <= set(services)
    assert {"prometheus", "grafana"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "projections"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert "ports" not in services["api"]  # reached through the proxy only
    proxy_address = services["proxy"]["networks"]["ledger"]["ipv4_address"]
    assert services["api"]["environment"]["TRUSTED_PROXIES"] == proxy_address
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "dynamic a api 8000" in caddy


@pytest.mark.parametrize("name", sorted(ledger_services()))
def test_every_service_command_is_one_the_peerpush_parser_accepts(name: str) -> None:
    command = ledger_services()[name]["command"]
    args = parser().parse_args([str(part) for part in command[1:]])
    assert callable(args.func)


@pytest.mark.parametrize("name", sorted(ledger_services()))
def test_every_variable_a_service_sets_is_a_typed_setting_and_its_value_is_accepted(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = ledger_services()[name]["environment"]
    ours = set(variables_in_code())
    unknown = set(environment) - ours - THIRD_PARTY
    assert not unknown, f"{name} sets variables no settings model reads: {sorted(unknown)}"

    env = example_env()
    for variable in ours:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, resolved(value, env))
    model = ProcessSettings if name in ("migrate", "projections") else ServiceSettings
    settings = model.from_env()  # raises, naming the variable, on any value it refuses
    assert settings.production and settings.log_format == "json"


def test_the_worker_audits_reconciles_and_publishes_the_head_on_a_schedule() -> None:
    environment = ledger_services()["worker"]["environment"]
    assert {"AUDIT_EVERY", "RECONCILE_EVERY", "CHAIN_HEAD_EXPORT", "METRICS_LISTEN"} <= set(
        environment
    )
    assert ledger_services()["worker"]["command"] == ["peerpush", "worker", "all"]


def test_the_dockerfile_is_multi_stage_pinned_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(bases) >= 2, "a build stage and a slim runtime stage"
    for base in bases:
        tag = base.partition("@")[0].partition(":")[2]
        assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), f"{base} is not pinned exactly"
    [user] = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s+.*CMD", text, flags=re.MULTILINE | re.DOTALL)
    cmd = json.loads(re.findall(r"^CMD\s+(\[.*\])", text, flags=re.MULTILINE)[-1])
    assert cmd[0] == "peerpush" and callable(parser().parse_args(cmd[1:]).func)


def test_every_image_the_topology_pulls_is_pinned_to_a_version() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        if name in ledger_services():
            continue  # built from the Dockerfile
        assert re.search(r":v?\d+\.\d+(\.\d+)?", image), f"{name}: {image} is not pinned"


def test_prometheus_scrapes_the_internal_listeners_and_grafana_reads_prometheus() -> None:
    port = ledger_services()["api"]["environment"]["METRICS_LISTEN"].rpartition(":")[2]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, service in (("peerpush-api", "api"), ("peerpush-worker", "worker")):
        [sd] = jobs[job]["dns_sd_configs"]
        assert sd["names"] == [service] and str(sd["port"]) == port
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    [source] = sources["datasources"]
    dashboard = json.loads((DEPLOY / "grafana" / "ledger.json").read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert used == {source["uid"]}


def queried_metrics() -> dict[str, set[str]]:
    """Metric names in the dashboard's and the alert rules' expressions, by where they are."""
    dashboard = json.loads((DEPLOY / "grafana" / "ledger.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    expressions = {
        "dashboard": [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])],
        "rules": [r["expr"] for g in rules["groups"] for r in g["rules"]],
    }
    return {
        where: {name for e in exprs for name in re.findall(r"\bpeerpush_\w+", e)}
        for where, exprs in expressions.items()
    }


def test_the_alert_rules_fire_on_any_audit_finding_or_reconcile_mismatch() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    by_name = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert by_name["AuditFinding"] == "max(peerpush_audit_findings) > 0"
    assert by_name["ReconcileMismatch"] == "max(peerpush_reconcile_mismatches) > 0"


@pytest.fixture
def scraped(api_client: TestClient, register_user: Callable[..., Account]) -> Iterator[set[str]]:
    """What a scrape of a real app shows after a little traffic and a few commands."""
    account = register_user()
    opened = checkout(api_client, account, 500)
    api_client.post(local_path(opened["checkout_url"]) + "/pay", follow_redirects=False)
    api_client.get("/v1/wallet", headers=account.headers)
    exposed = api_client.get("/v1/metrics")
    assert exposed.status_code == 200
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in text_string_to_metric_families(exposed.text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    yield names


def test_every_metric_the_dashboard_and_alerts_query_is_exported(scraped: set[str]) -> None:
    queried = queried_metrics()
    assert len(queried["dashboard"]) >= 12 and queried["rules"]
    for where, names in queried.items():
        missing = names - scraped
        assert not missing, f"{where} queries metrics /metrics does not export: {missing}"
