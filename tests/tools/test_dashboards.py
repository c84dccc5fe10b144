"""The dashboards and the scrape configuration are code: the committed files are exactly what the generator
(``python -m tools.dashboards``) writes, and every panel queries metrics ordermesh defines."""

from __future__ import annotations

import json
import re

from ordermesh.platform import metrics
from tools.dashboards import BOARDS, OUT, build, expressions, files, panels


def test_committed_files_are_the_generators_output() -> None:
    for path, text in files().items():
        assert path.exists(), f"{path} missing: run python -m tools.dashboards"
        assert path.read_text() == text, f"{path} differs from the generator: run python -m tools.dashboards"
    assert sorted(p.name for p in OUT.glob("*.json")) == sorted(f"{name}.json" for name in BOARDS)


def test_the_four_dashboards_query_only_defined_metrics_through_a_prometheus_datasource() -> None:
    defined = {f.name for f in metrics.FAMILIES}
    series = defined | {
        f"{f.name}_{s}" for f in metrics.FAMILIES if f.kind == "histogram" for s in ("bucket", "sum", "count")
    }
    uids = set()
    for name, make in BOARDS.items():
        data = build(make())
        uids.add(data["uid"])
        assert data["templating"]["list"][0]["type"] == "datasource"
        queries = expressions(data)
        assert len(queries) >= 8, name
        for title, expr in queries:
            used = set(re.findall(r"\bordermesh_[a-z0-9_]+", expr))
            assert used and used <= series, (name, title, used - series)
        for p in panels(data):
            if p["type"] != "row":
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, p["title"])
        assert len({p["id"] for p in panels(data)}) == len(list(panels(data))), name
    assert uids == {"ordermesh-order-flow", "ordermesh-brokers", "ordermesh-books", "ordermesh-bus"}


def test_order_flow_has_heatmaps_and_quantiles_of_each_hop() -> None:
    data = json.loads((OUT / "order-flow.json").read_text())
    heatmaps = [p for p in panels(data) if p["type"] == "heatmap"]
    hops = {re.search(r'hop="(\w+)"', p["targets"][0]["expr"]).group(1) for p in heatmaps}  # type: ignore[union-attr]
    assert hops == {"intent_to_order", "order_to_command", "command_to_ack", "intent_to_fill"}
    assert all(p["targets"][0]["format"] == "heatmap" for p in heatmaps)
    exprs = [e for _, e in expressions(data)]
    assert any(e.startswith("histogram_quantile(0.5,") and "hop_latency" in e for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") and "hop_latency" in e for e in exprs)
