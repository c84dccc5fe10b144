"""The Grafana dashboards of ``deploy/grafana/``, as code: Grafana's ``grafana-foundation-sdk`` builders.

``python -m tools.dashboards`` writes the JSON Grafana imports (and the Prometheus scrape configuration for
``make run``, see :mod:`tools.dashboards.scrape`); ``--check`` exits 1 when a committed file differs from what this
code produces (``tests/tools/test_dashboards.py`` checks the same in ``make test``).

Every panel queries metrics every running system has (paper venue included), so each query returns data against
``make run``; ``tests/system/test_prometheus.py`` proves it against a real Prometheus. Queries use the dashboard's
variables: ``${datasource}`` (a Prometheus data source), ``$broker_id`` (brokers) and ``$account`` (books), and
Grafana's ``$__rate_interval``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdb
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gdm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "deploy" / "grafana"

DATASOURCE = gdm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    #: heatmap: the buckets' increase per interval, one series per ``le``
    heatmap: bool = False
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | heatmap | stat | table
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass
class Board:
    uid: str
    title: str
    description: str
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)
    variables: list[tuple[str, str, str]] = field(default_factory=list)  # (name, label, label_values query)


def q(expr: str, legend: str = "", **kw: Any) -> Query:
    return Query(expr, legend, **kw)


def ts(title: str, *queries: Query, unit: str = "short", description: str = "", width: int = 12) -> Panel:
    return Panel(title, "timeseries", queries, unit, description, width)


def quantiles(metric: str, by: str, where: str = "") -> tuple[Query, Query]:
    """p50 and p99 of a histogram, per ``by``."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return tuple(  # type: ignore[return-value]
        q(
            f"histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{where}{RATE})))",
            f"p{int(p * 100)} {legend}",
        )
        for p in (0.5, 0.99)
    )


def hop_heatmap(hop: str, title: str) -> Panel:
    return Panel(
        title,
        "heatmap",
        (
            q(
                f'sum by (le) (increase(ordermesh_hop_latency_seconds_bucket{{hop="{hop}"}}{RATE}))',
                "{{le}}",
                heatmap=True,
            ),
        ),
        unit="s",
        width=6,
    )


# -------------------------------------------------------------------------------------------- the dashboards


def order_flow() -> Board:
    b = Board(
        "ordermesh-order-flow",
        "ordermesh / order flow",
        "Intents, orders, fills and refusals per second; latency of each hop and end to end; consumer backlogs.",
    )
    b.rows.append(
        (
            "Throughput",
            [
                ts(
                    "Intents, orders and fills per second",
                    q(f"sum(rate(ordermesh_intents_total{RATE}))", "intents"),
                    q(f'sum(rate(ordermesh_orders_total{{status="SUBMITTED"}}{RATE}))', "orders sent to a broker"),
                    q(f'sum(rate(ordermesh_fills_total{{service="gateway"}}{RATE}))', "fills"),
                    unit="ops",
                ),
                ts(
                    "Refusals per second by reason",
                    q(
                        f"sum by (service, category) (rate(ordermesh_refusals_total{RATE}))",
                        "{{service}} {{category}}",
                    ),
                    unit="ops",
                    description="sizer: IntentRejected, router: OrderDenied, gateway: OrderRejected by the broker",
                ),
                ts(
                    "Orders by status reached, per second",
                    q(f"sum by (status) (rate(ordermesh_orders_total{RATE}))", "{{status}}"),
                    unit="ops",
                ),
                ts(
                    "Sizing outcomes per second",
                    q(f"sum by (method, status) (rate(ordermesh_sizings_total{RATE}))", "{{method}} {{status}}"),
                    unit="ops",
                ),
            ],
        )
    )
    b.rows.append(
        (
            "Latency",
            [
                ts(
                    "Hop latency p50 / p99",
                    *quantiles("ordermesh_hop_latency_seconds", "hop"),
                    unit="s",
                    description="intent_to_fill is end to end; the other hops are its parts",
                ),
                ts(
                    "Router decision and handler latency p99",
                    q(
                        f"histogram_quantile(0.99, sum by (le) (rate(ordermesh_router_decision_seconds_bucket{RATE})))",
                        "router decision",
                    ),
                    q(
                        "histogram_quantile(0.99, sum by (le, service, consumer) "
                        f"(rate(ordermesh_handler_seconds_bucket{RATE})))",
                        "handler {{service}} {{consumer}}",
                    ),
                    unit="s",
                ),
                hop_heatmap("intent_to_fill", "End to end: intent to fill"),
                hop_heatmap("intent_to_order", "Intent to order (sizer)"),
                hop_heatmap("order_to_command", "Order to command (router)"),
                hop_heatmap("command_to_ack", "Command to broker ack (gateway)"),
            ],
        )
    )
    b.rows.append(
        (
            "Backlog and errors",
            [
                ts(
                    "Consumer backlog",
                    q("max by (stream, consumer) (ordermesh_consumer_pending_messages)", "pending {{consumer}}"),
                    q(
                        "max by (stream, consumer) (ordermesh_consumer_ack_pending_messages)",
                        "unacknowledged {{consumer}}",
                    ),
                ),
                ts(
                    "Bad messages and handler errors per second",
                    q(f"sum by (service, reason) (rate(ordermesh_bad_messages_total{RATE}))", "{{service}} {{reason}}"),
                    q(
                        f"sum by (service, consumer) (rate(ordermesh_handler_errors_total{RATE}))",
                        "handler errors {{service}} {{consumer}}",
                    ),
                    unit="ops",
                ),
            ],
        )
    )
    return b


def brokers() -> Board:
    b = Board(
        "ordermesh-brokers",
        "ordermesh / brokers",
        "Broker connections, request latency by operation, reconnects, rate-limit budget, unknown outcomes, "
        "reconciliation differences and transaction costs, per broker id.",
        variables=[("broker_id", "broker", "label_values(ordermesh_broker_connected, broker_id)")],
    )
    sel = '{broker_id=~"$broker_id"}'
    b.rows.append(
        (
            "Connection",
            [
                Panel(
                    "Broker connected",
                    "stat",
                    (q(f"max by (broker_id) (ordermesh_broker_connected{sel})", "{{broker_id}}"),),
                    unit="bool_on_off",
                    width=8,
                ),
                ts(
                    "Reconnects",
                    q(f"sum by (broker_id) (increase(ordermesh_broker_reconnects_total{sel}{RATE}))", "{{broker_id}}"),
                    width=8,
                ),
                ts(
                    "Rate-limit budget used",
                    q(f"max by (broker_id) (ordermesh_broker_rate_limit_used_ratio{sel})", "{{broker_id}}"),
                    q(
                        f"sum by (broker_id) (rate(ordermesh_broker_rate_limited_total{sel}{RATE}))",
                        "rate-limited answers/s {{broker_id}}",
                    ),
                    unit="percentunit",
                    width=8,
                    description="share of the broker's request limit used in its window (0 without a limit)",
                ),
            ],
        )
    )
    b.rows.append(
        (
            "Requests",
            [
                ts(
                    "Request latency by operation p50 / p99",
                    *quantiles("ordermesh_broker_request_seconds", "broker_id, operation", sel),
                    unit="s",
                ),
                ts(
                    "Commands by outcome per second",
                    q(
                        f"sum by (broker_id, command, outcome) (rate(ordermesh_commands_total{sel}{RATE}))",
                        "{{broker_id}} {{command}} {{outcome}}",
                    ),
                    unit="ops",
                ),
                ts(
                    "Unknown outcomes",
                    q(f"max by (broker_id) (ordermesh_broker_unresolved_orders{sel})", "unresolved {{broker_id}}"),
                    q(
                        f"sum by (broker_id) (increase(ordermesh_unknown_order_updates_total{sel}{RATE}))",
                        "updates for unknown orders {{broker_id}}",
                    ),
                    description="orders the adapter could not settle without guessing (ordermesh orders --unknown)",
                ),
                ts(
                    "Reconciliation differences",
                    q(
                        f"max by (broker_id) (ordermesh_reconciliation_open_differences{sel})",
                        "open {{broker_id}}",
                    ),
                    q(
                        f"sum by (broker_id) (increase(ordermesh_reconciliation_differences_total{sel}[1h]))",
                        "found in the last hour {{broker_id}}",
                    ),
                ),
            ],
        )
    )
    b.rows.append(
        (
            "Costs and market data",
            [
                ts(
                    "Fill slippage p50 / p99",
                    *quantiles("ordermesh_fill_slippage_ratio", "broker_id", sel),
                    unit="percentunit",
                    width=8,
                    description="against each fill's reference price; positive is worse",
                ),
                ts(
                    "Commissions per second",
                    q(
                        f"sum by (broker_id, asset) (rate(ordermesh_commissions_total{sel}{RATE}))",
                        "{{broker_id}} {{asset}}",
                    ),
                    width=8,
                ),
                ts(
                    "Quotes per second",
                    q(f"sum by (broker_id) (rate(ordermesh_quotes_total{sel}{RATE}))", "{{broker_id}}"),
                    unit="ops",
                    width=8,
                ),
            ],
        )
    )
    return b


def books() -> Board:
    b = Board(
        "ordermesh-books",
        "ordermesh / books",
        "Equity, PnL and margin use per account and strategy, positions, trading states and daily-loss use "
        "(keeper and router).",
        variables=[("account", "account", "label_values(ordermesh_account_equity, account)")],
    )
    sel = '{account=~"$account"}'
    b.rows.append(
        (
            "Accounts",
            [
                ts(
                    "Equity and balance",
                    q(f"ordermesh_account_equity{sel}", "equity {{account}} ({{currency}})"),
                    q(f"ordermesh_account_balance{sel}", "balance {{account}} ({{currency}})"),
                ),
                ts(
                    "PnL",
                    q(f"ordermesh_account_realized_pnl{sel}", "realized {{account}} ({{currency}})"),
                    q(f"ordermesh_account_unrealized_pnl{sel}", "unrealized {{account}} ({{currency}})"),
                ),
                ts(
                    "Margin use",
                    q(f"ordermesh_account_margin_used_ratio{sel}", "margin / equity {{account}}"),
                    unit="percentunit",
                ),
                ts(
                    "Daily loss limit used",
                    q(f"ordermesh_daily_loss_limit_used_ratio{sel}", "{{account}}"),
                    unit="percentunit",
                    description="accounts with a daily_loss_limit; at 100 % the router halts the account",
                ),
            ],
        )
    )
    b.rows.append(
        (
            "Strategies and positions",
            [
                ts(
                    "PnL per strategy (quote currency)",
                    q(
                        "sum by (account, strategy, currency) "
                        f"(ordermesh_position_realized_pnl{sel} + ordermesh_position_unrealized_pnl{sel})",
                        "{{account}}/{{strategy}} ({{currency}})",
                    ),
                ),
                ts(
                    "Positions (lots)",
                    q(
                        f"sum by (account, strategy, symbol) (ordermesh_position_quantity{sel})",
                        "{{account}}/{{strategy}} {{symbol}}",
                    ),
                ),
                Panel(
                    "Trading state",
                    "table",
                    (
                        q(
                            "max by (scope_kind, scope, state) (ordermesh_trading_state) == 1",
                            "{{scope_kind}} {{scope}}: {{state}}",
                            instant=True,
                        ),
                    ),
                    description="every scope's state; set with ordermesh halt | reduce | resume",
                ),
                ts(
                    "Fills applied per second and keeper backlog",
                    q(f'sum(rate(ordermesh_fills_total{{service="keeper"}}{RATE}))', "fills applied/s"),
                    q(
                        'max(ordermesh_consumer_pending_messages{service="keeper"})',
                        "exec messages behind",
                    ),
                ),
            ],
        )
    )
    return b


def bus() -> Board:
    b = Board(
        "ordermesh-bus",
        "ordermesh / bus",
        "JetStream as the services see it: consumer pending and unacknowledged messages, redeliveries, stream "
        "sizes; NATS connections, slow consumers, heartbeats and running processes.",
    )
    b.rows.append(
        (
            "JetStream",
            [
                ts(
                    "Consumer pending",
                    q("max by (stream, consumer) (ordermesh_consumer_pending_messages)", "{{stream}} {{consumer}}"),
                ),
                ts(
                    "Consumer unacknowledged (ack pending)",
                    q(
                        "max by (stream, consumer) (ordermesh_consumer_ack_pending_messages)",
                        "{{stream}} {{consumer}}",
                    ),
                ),
                ts(
                    "Redeliveries per second",
                    q(f"sum by (service, consumer) (rate(ordermesh_redeliveries_total{RATE}))", "{{consumer}}"),
                    unit="ops",
                ),
                ts(
                    "Messages handled per second",
                    q(
                        f"sum by (service, consumer, outcome) (rate(ordermesh_messages_total{RATE}))",
                        "{{consumer}} {{outcome}}",
                    ),
                    unit="ops",
                ),
                ts("Stream messages", q("max by (stream) (ordermesh_stream_messages)", "{{stream}}")),
                ts("Stream size", q("max by (stream) (ordermesh_stream_bytes)", "{{stream}}"), unit="bytes"),
            ],
        )
    )
    b.rows.append(
        (
            "NATS and processes",
            [
                ts(
                    "NATS connected (processes)",
                    q("sum by (service) (ordermesh_nats_connected)", "{{service}}"),
                    width=8,
                ),
                ts(
                    "NATS reconnects and slow consumers",
                    q(f"sum by (service) (increase(ordermesh_nats_reconnects_total{RATE}))", "reconnects {{service}}"),
                    q(
                        f"sum by (service) (increase(ordermesh_nats_slow_consumers_total{RATE}))",
                        "slow-consumer drops {{service}}",
                    ),
                    width=8,
                ),
                ts(
                    "Heartbeats per second and processes running",
                    q(f"sum by (service) (rate(ordermesh_heartbeats_total{RATE}))", "heartbeats/s {{service}}"),
                    q("count by (service) (ordermesh_service_info)", "processes {{service}}"),
                    width=8,
                ),
            ],
        )
    )
    return b


BOARDS = {"order-flow": order_flow, "brokers": brokers, "books": books, "bus": bus}


# ----------------------------------------------------------------------------------------------- building


def _target(query: Query, ref: str) -> prom.Dataquery:
    t = prom.Dataquery().expr(query.expr).legend_format(query.legend or "__auto").ref_id(ref).datasource(DATASOURCE)
    if query.heatmap:
        t = t.format(PromQueryFormat.HEATMAP)
    if query.instant:
        t = t.instant().format(PromQueryFormat.TABLE)
    return t


def _panel(p: Panel) -> Any:
    builder: Any
    if p.kind == "timeseries":
        builder = timeseries.Panel().fill_opacity(10)
    elif p.kind == "heatmap":
        builder = heatmap.Panel().y_axis(heatmap.YAxisConfig().unit(p.unit))
    elif p.kind == "stat":
        builder = stat.Panel()
    elif p.kind == "table":
        builder = table.Panel()
    else:
        raise ValueError(p.kind)
    builder = builder.title(p.title).datasource(DATASOURCE).span(p.width).height(p.height)
    if p.kind != "heatmap":
        builder = builder.unit(p.unit)
    if p.description:
        builder = builder.description(p.description)
    for i, query in enumerate(p.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + i)))
    return builder


def build(board: Board) -> dict[str, Any]:
    d = (
        gdb.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["ordermesh"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(gdm.DashboardCursorSync.CROSSHAIR)
        .with_variable(gdb.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for name, label, query in board.variables:
        d = d.with_variable(
            gdb.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(query)
            .refresh(gdm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(gdm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    ids = iter(range(1, 1000))
    for title, panels in board.rows:
        d = d.with_row(gdb.Row(title).id(next(ids)))
        for p in panels:
            d = d.with_panel(_panel(p).id(next(ids)))
    data: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return data


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def files() -> dict[Path, str]:
    """Every generated file and its content."""
    from tools.dashboards.scrape import scrape_config_text

    out = {OUT / f"{name}.json": render(build(make())) for name, make in BOARDS.items()}
    out[ROOT / "deploy" / "prometheus" / "prometheus.yml"] = scrape_config_text()
    return out


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard's JSON, rows' nested panels included."""
    for p in data.get("panels", []):
        yield p
        yield from p.get("panels", [])


def expressions(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of a dashboard's JSON."""
    return [(p.get("title", ""), t["expr"]) for p in panels(data) for t in p.get("targets", []) if "expr" in t]
