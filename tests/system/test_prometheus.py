"""Dashboards and alert rules against a real Prometheus (the Debian ``prometheus`` package, which ``make test``
installs): the system's processes with traffic through the SDK, scraped every second. Every PromQL expression of
every committed dashboard panel returns data, every rule evaluates without error and every series it reads exists,
each process serves only its own metric families with bounded labels, and stopping the gateway makes
OrderMeshBrokerDown fire.

Without ``prometheus`` on the PATH the test is skipped, unless ``ORDERMESH_REQUIRE_PROMETHEUS`` is set (``make test``
sets it when it could install the package), when it fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from ordermesh.contract.wire import OrderFilled
from ordermesh.platform import metrics
from ordermesh.platform.natsserver import NatsServer, free_port
from ordermesh.platform.prometheus import RULES, PrometheusServer, Target, binary, config_for
from ordermesh.sdk import OrderMeshClient
from tests.harness import System, eventually
from tools.dashboards import OUT, expressions

if binary() is None:
    if os.environ.get("ORDERMESH_REQUIRE_PROMETHEUS"):
        raise RuntimeError("prometheus is not installed and ORDERMESH_REQUIRE_PROMETHEUS is set")
    pytest.skip("prometheus is not installed (make test installs the Debian package)", allow_module_level=True)

#: Grafana's variables in the committed dashboards, as a user with every value selected sees them; rates over a
#: window that holds the whole test's traffic.
VARIABLES = {"$__rate_interval": "5m", "$broker_id": ".*", "$account": ".*"}
SELECTOR = re.compile(r"\b(ordermesh_[a-z0-9_]+)(\{[^}]*\})?")
GROUPS = {
    "sizer": (metrics.SIZER,),
    "router": (metrics.ROUTER,),
    "keeper": (metrics.KEEPER,),
    "gateway": metrics.gateway_groups("paper"),
}


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def rules_with_short_for(path: Path) -> Path:
    """The committed rules with every ``for`` at 1 s: the same expressions, without waiting out their durations
    (``promtool test rules`` covers those)."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def families_and_labels(text: str) -> tuple[set[str], list[dict[str, str]]]:
    """The ordermesh families a /metrics page declares (TYPE lines) and the labels of its ordermesh samples."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ordermesh_")}
    samples = [
        dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        for line in text.splitlines()
        if line.startswith("ordermesh_")
    ]
    return names, samples


def declared(groups: tuple[str, ...]) -> set[str]:
    chosen = {metrics.EVERY, *groups}
    return {f.name for f in metrics.FAMILIES if chosen.intersection(f.exported_by)}


def check_own_families(system: System) -> None:
    enumerated = {label.name: set(label.values) for f in metrics.FAMILIES for label in f.labels if label.values}
    for service, url in system.metrics_urls.items():
        names, samples = families_and_labels(scrape(url))
        assert names == declared(GROUPS[service]), (service, names ^ declared(GROUPS[service]))
        for labels in samples:
            assert not {"instance", "job"} & set(labels), (service, labels)
            assert str(system.procs[service].pid) not in "".join(labels.values()), (service, labels)
        # values of enumerated labels stay within their enumeration (status: orders' or sizings' set)
        for labels in samples:
            for name, value in labels.items():
                if name in enumerated and name not in ("status", "reason", "outcome", "service"):
                    assert value in enumerated[name], (service, name, value)


async def test_dashboards_and_rules_return_data_and_a_stopped_gateway_fires_broker_down(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = tmp_path / "om.yaml"
    config.write_text('risk:\n  "*": {daily_loss_limit: "50000"}\n')
    async with System(nats_server.url, tmp_path, config=config) as system:
        await system.start_all()

        async def metrics_urls() -> bool:
            return set(system.metrics_urls) >= set(GROUPS)

        await eventually(metrics_urls, what="every service's metrics URL")
        async with OrderMeshClient("s-prom", url=nats_server.url) as om:
            await buy(om, "EURUSD", "GBPUSD")  # a fill of each symbol before: its series exist from the first scrape
        found = [Target(name, urlparse(url).netloc) for name, url in system.metrics_urls.items()]
        cfg = config_for(found, rule_files=[str(rules_with_short_for(tmp_path / "alerts.yml"))], interval="1s")
        prometheus = PrometheusServer(tmp_path / "prometheus", cfg, port=free_port())
        prometheus.start()
        try:

            async def scraped() -> bool:
                active = prometheus.api("targets")["activeTargets"]
                return len(active) == len(GROUPS) and all(t["health"] == "up" for t in active)

            await eventually(scraped, what="every target scraped")
            # traffic while Prometheus watches: fills, and a refusal
            async with OrderMeshClient("s-prom", url=nats_server.url) as om:
                await buy(om, "EURUSD", "GBPUSD", "EURUSD")
                refused = await om.wait(await om.buy("NOSUCH", Decimal("0.10")), timeout=30)
                assert not isinstance(refused, OrderFilled)
            check_own_families(system)
            await check_against(prometheus, system)
        finally:
            prometheus.stop()


async def check_against(prometheus: PrometheusServer, system: System) -> None:
    # every dashboard query returns data, and a number (a quantile of a histogram that saw traffic)
    queries = [
        (f"{path.name}: {title}", substitute(expr))
        for path in sorted(OUT.glob("*.json"))
        for title, expr in expressions(json.loads(path.read_text()))
    ]
    assert len(queries) >= 40
    missing: list[str] = []

    async def dashboards_have_data() -> bool:
        missing.clear()
        for where, expr in queries:
            result = prometheus.query(expr)
            values = [float(r["value"][1]) for r in result]
            if not any(math.isfinite(v) for v in values):
                missing.append(f"{where}: {expr} -> {values}")
        return not missing

    try:
        await eventually(dashboards_have_data, timeout=30, what="data for every dashboard query")
    except AssertionError:
        raise AssertionError("queries without data:\n" + "\n".join(missing)) from None

    # every rule evaluates without error, and every series it reads exists
    async def rules_evaluated() -> bool:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return len(rules) == 12 and all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith("2")
                                        for r in rules)  # fmt: skip

    await eventually(rules_evaluated, what="every rule evaluated without error")
    rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    unread = [
        f"{r['name']}: {m.group(0)}"
        for r in rules
        for m in SELECTOR.finditer(r["query"])
        if not prometheus.query(f"count({m.group(0)})")
    ]
    assert not unread, "rules reading series that do not exist:\n" + "\n".join(unread)
    assert not firing(prometheus, "OrderMeshBrokerDown")

    # the gateway stops: its broker is reported down
    system.kill("gateway", signal.SIGTERM)

    async def broker_down() -> bool:
        return any(a["labels"].get("broker_id") == "paper" for a in firing(prometheus, "OrderMeshBrokerDown"))

    await eventually(broker_down, timeout=30, what="OrderMeshBrokerDown firing for paper")


async def buy(om: OrderMeshClient, *symbols: str) -> None:
    for symbol in symbols:
        outcome = await om.wait(await om.buy(symbol, Decimal("0.10")), timeout=30)
        assert isinstance(outcome, OrderFilled), outcome


def firing(prometheus: PrometheusServer, name: str) -> list[dict[str, Any]]:
    return [
        a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]
