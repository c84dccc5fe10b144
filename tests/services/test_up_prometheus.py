"""``ordermesh up --prometheus``: Prometheus beside the system, scraping every process ``up`` starts (on the
configured ports), with the alert rules of deploy/prometheus."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.natsserver import free_port
from ordermesh.platform.prometheus import PrometheusServer, binary
from services import up
from tests.harness import eventually


async def test_up_starts_prometheus_with_every_process_as_a_target_and_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if binary() is None:
        pytest.skip("prometheus is not installed (make test installs the Debian package)")
    monkeypatch.setattr(up, "RUN_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    port = free_port()
    (child,) = up._prometheus(OrderMeshConfig(), port, tmp_path)
    assert child.name == "prometheus"
    child.start({})
    server = PrometheusServer(tmp_path / "prometheus", {}, port=port)
    try:

        async def ready() -> bool:
            assert child.alive, (tmp_path / "prometheus.log").read_text()
            return server.ready()

        await eventually(ready, what="prometheus ready")
        expected = {f"http://127.0.0.1:{p}/metrics" for p in (9301, 9302, 9303, 9310)}

        async def targets() -> bool:
            return {t["scrapeUrl"] for t in server.api("targets")["activeTargets"]} == expected

        await eventually(targets, what="sizer, router, keeper and the paper gateway as targets")
        rules = [r["name"] for g in server.api("rules")["groups"] for r in g["rules"]]
        assert "OrderMeshBrokerDown" in rules and len(rules) == 12
    finally:
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
        child.proc.wait(15)


def test_up_goes_on_without_prometheus_when_it_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("ordermesh.platform.prometheus.binary", lambda: None)
    assert up._prometheus(OrderMeshConfig(), 9090, tmp_path) == []
    assert "prometheus is not installed" in capsys.readouterr().err
