"""``ordermesh up --cluster`` (``make run-cluster``): a 3-node NATS cluster, two of each service, the live view
saying who holds what."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.up import _holds
from tests.services.test_cli import ordermesh


def test_the_live_view_names_what_each_process_holds() -> None:
    assert _holds({"partitions": "0,2", "of": "4"}) == "partitions 0,2 of 4"
    assert _holds({"partitions": "", "of": "4"}) == "partitions none of 4"
    assert _holds({"role": "standby"}) == "standby"
    assert _holds({}) == ""


def test_up_cluster_runs_two_of_each_service_on_three_nodes_and_trades(tmp_path: Path) -> None:
    env = {
        "ORDERMESH__NATS__STORE_DIR": str(tmp_path / "nats"),
        "ORDERMESH__DEMO__INTERVAL_S": "0.2",
        **{f"ORDERMESH__HTTP__{svc}": "0" for svc in ("SIZER", "ROUTER", "KEEPER", "DEMO", "GATEWAY_BASE", "CONSOLE")},
    }
    out = ordermesh("up", "--cluster", "--duration", "20", "--no-view", env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "a 3-node NATS cluster at" in out.stderr and "(replicas 3)" in out.stderr
    # keeper, router, gateway-paper, sizer: two each; the console and the demo
    assert "10 processes started" in out.stderr, out.stderr
    summary = next(line for line in out.stdout.splitlines() if line.startswith("ordermesh: ran"))
    assert int(re.search(r"fills=(\d+)", summary).group(1)) > 0  # type: ignore[union-attr]
    logs = tmp_path / ".ordermesh" / "logs"
    taken: dict[str, set[int]] = {}
    for name in ("router-1", "router-2"):
        for line in (logs / f"{name}.log").read_text().splitlines():
            if '"partitions taken"' in line:
                taken.setdefault(name, set()).update(json.loads(line)["partitions"])
    assert set(taken) == {"router-1", "router-2"}, "both routers held partitions"
    roles = {name: (logs / f"{name}.log").read_text() for name in ("gateway-paper-1", "gateway-paper-2")}
    active = [n for n, text in roles.items() if "active: this gateway holds the broker connection" in text]
    assert len(active) == 1, "one gateway active, the other standing by"
    for log in logs.glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name
