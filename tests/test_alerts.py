"""deploy/prometheus: the alert rules pass ``promtool check rules`` and their unit tests (``promtool test rules``),
the scrape configuration ``promtool check config``, and the Alertmanager example sends to a webhook. ``promtool``
comes with the Debian ``prometheus`` package (``make test`` installs it); without it these tests are skipped unless
``ORDERMESH_REQUIRE_PROMETHEUS`` is set."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("ORDERMESH_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed and ORDERMESH_REQUIRE_PROMETHEUS is set")
        pytest.skip("promtool is not installed (make test installs the Debian prometheus package)")
    done = subprocess.run([exe, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_rules_are_valid() -> None:
    assert "SUCCESS: 12 rules found" in promtool("check", "rules", "alerts.yml")


def test_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_scrape_configuration_is_valid() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out


def test_every_alert_has_a_severity_a_summary_a_runbook_and_a_unit_test() -> None:
    rules = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no unit test that makes it fire"
    assert {r["alert"] for r in rules} >= {
        "OrderMeshBrokerDown", "OrderMeshHeartbeatMissing", "OrderMeshConsumerBacklogGrowing",
        "OrderMeshUnknownOutcomeOrders", "OrderMeshRefusalRateSpike", "OrderMeshTradingHalted",
        "OrderMeshDailyLossNearLimit", "OrderMeshPositionMismatch", "OrderMeshKeeperBehind",
        "OrderMeshNatsSlowConsumer",
    }  # fmt: skip


def test_alertmanager_example_routes_everything_to_a_webhook() -> None:
    cfg = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert receivers[cfg["route"]["receiver"]]["webhook_configs"][0]["url"].startswith("http")
    amtool = shutil.which("amtool")
    if amtool is not None:
        done = subprocess.run([amtool, "check-config", "alertmanager.yml"], cwd=PROM, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
