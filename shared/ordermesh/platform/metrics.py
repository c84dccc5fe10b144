"""Prometheus metrics, defined once, each with what the docs' metric table says about it (``tools/metrics_doc.py``
writes that table into docs/architecture.md §9 from this module).

Names follow the Prometheus naming guide: ``ordermesh_<what>_<unit>`` in base units (seconds, ratios from 0 to 1),
counters end in ``_total``, the info metric in ``_info``; money carries its denomination in a ``currency`` label
(there is no base unit of money). Label values are bounded: enumerated here, or bounded by the configuration
(broker ids, accounts, instruments, strategies), never a message id, a process id or a host name; no label is
called ``instance`` or ``job``, which are Prometheus's own target labels. ``service`` is the kind of process
(sizer, router, gateway, keeper).

Each family names the processes that export it. A service serves only its own families (:func:`registry`) and starts
at zero the series whose label values it knows (:func:`start_at_zero`), so that a rate, a dashboard or an alert has
data before the first event. Gauges of state that already lives in a service (trading states, account figures,
positions, consumer backlogs) are set from that state when scraped or polled (``observe_*``), never on a hot path.
prometheus_client's default registry also holds every family, for in-process tests; no process serves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from ordermesh.contract.subjects import COMMANDS as _COMMANDS
from ordermesh.contract.subjects import EQUITY as _EQUITY
from ordermesh.contract.subjects import EXEC as _EXEC
from ordermesh.contract.subjects import INTENTS as _INTENTS
from ordermesh.contract.subjects import ORDERS as _ORDERS
from ordermesh.contract.wire import OrderStatus, RejectCategory, TradingState

# No ``*_created`` series beside every counter and histogram: they double the series and no query reads them.
disable_created_metrics()

# ------------------------------------------------------------------------------------------ who exports what

#: Every ordermesh service process (the runtime's families: messages, NATS, heartbeats, JetStream).
EVERY = "service"
SIZER, ROUTER, GATEWAY, KEEPER = "sizer", "router", "gateway", "keeper"
#: The demo strategies' process (``ordermesh demo``): an SDK user, not a service; only its own families.
DEMO = "demo"
#: Gateways by broker type: ``gateway:<type>`` (see :func:`gateway_groups`).
BINANCE = ("gateway:binance_spot", "gateway:binance_usdm")
MT5 = ("gateway:mt5",)
HOPS = (SIZER, ROUTER, GATEWAY)
STREAMS = (_INTENTS, _ORDERS, _COMMANDS, _EXEC, _EQUITY)


def gateway_groups(broker_type: str) -> tuple[str, ...]:
    return (GATEWAY, f"gateway:{broker_type}")


@dataclass(frozen=True, slots=True)
class Label:
    name: str
    #: Every value the code uses, when it enumerates them (started at zero where the family asks for it).
    values: tuple[str, ...] = ()
    #: What bounds the values when they are not enumerated here.
    bound: str = ""


@dataclass(frozen=True, slots=True)
class Family:
    metric: Any  # Counter | Gauge | Histogram
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[Label, ...]
    exported_by: tuple[str, ...]
    #: Start every combination of known label values at zero (:func:`start_at_zero`).
    zero: bool


FAMILIES: list[Family] = []


def _family(
    cls: Any, name: str, help: str, labels: Sequence[Label], by: Sequence[str], *, zero: bool = False, **kw: Any
) -> Any:
    metric = cls(name, help, [label.name for label in labels], **kw)
    FAMILIES.append(Family(metric, name, cls._type, help, tuple(labels), tuple(by), zero))
    return metric


def counter(name: str, help: str, labels: Sequence[Label], by: Sequence[str], *, zero: bool = False) -> Counter:
    assert name.endswith("_total"), name
    return _family(Counter, name, help, labels, by, zero=zero)  # type: ignore[no-any-return]


def gauge(name: str, help: str, labels: Sequence[Label], by: Sequence[str], *, zero: bool = False) -> Gauge:
    return _family(Gauge, name, help, labels, by, zero=zero)  # type: ignore[no-any-return]


def histogram(
    name: str, help: str, labels: Sequence[Label], by: Sequence[str], buckets: Sequence[float], *, zero: bool = False
) -> Histogram:
    return _family(Histogram, name, help, labels, by, zero=zero, buckets=buckets)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------- labels

SERVICE = Label("service", (SIZER, ROUTER, GATEWAY, KEEPER))
CONSUMER = Label("consumer", bound="the services' consumers: sizer, router, router-exec, keeper, gw- and a broker id")
STREAM = Label("stream", STREAMS)
BROKER = Label("broker_id", bound="configured broker ids")
ACCOUNT = Label("account", bound="accounts (configured, or named by a fill)")
SYMBOL = Label("symbol", bound="instruments traded")
STRATEGY = Label("strategy", bound="strategies that traded")
CURRENCY = Label("currency", bound="account or quote currencies")
CATEGORY = Label("category", tuple(c.value for c in RejectCategory))
HOP = Label("hop", ("intent_to_order", "order_to_command", "command_to_ack", "intent_to_fill"))
#: The hops each service measures (its series start at zero).
HOPS_BY_SERVICE = {
    SIZER: ("intent_to_order",),
    ROUTER: ("order_to_command",),
    GATEWAY: ("command_to_ack", "intent_to_fill"),
}
COMMAND = Label("command", ("PlaceOrder", "CancelOrder", "ModifyOrder"))
METHOD = Label("method", ("fixed", "kelly", "risk_pct", "unknown"))
BAD_REASONS = (
    # decoding (every consumer), a handler giving up
    "undecodable", "schema_version", "wrong_type", "invalid", "handler_failed",
    # what a service refuses after decoding
    "unprocessable", "control_subject", "unknown_broker", "unknown_order", "bad_fill", "out_of_bounds",
)  # fmt: skip

# Latency buckets from 50 µs to 10 s: local hops are sub-millisecond, broker round trips are not.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

# ------------------------------------------------------------------------------- every service (the runtime)

SERVICE_INFO = gauge(
    "ordermesh_service_info",
    "1 for each running service: its kind, its configured instance name (the service's kind when none is given; "
    "never a process id) and the ordermesh version",
    [SERVICE, Label("instance_name", bound="names given with --instance"), Label("version", bound="one per release")],
    [EVERY],
)
MESSAGES = counter(
    "ordermesh_messages_total",
    "Messages handled by a consumer, by outcome",
    [SERVICE, CONSUMER, Label("outcome", ("ok", "bad", "retry", "duplicate"))],
    [EVERY],
    zero=True,
)
BAD_MESSAGES = counter(
    "ordermesh_bad_messages_total",
    "Messages refused before or instead of handling (logged with their subject; never redelivered), by reason",
    [SERVICE, Label("reason", BAD_REASONS)],
    [EVERY],
    zero=True,
)
HANDLER_ERRORS = counter(
    "ordermesh_handler_errors_total",
    "Handler exceptions (the message is redelivered)",
    [SERVICE, CONSUMER],
    [EVERY],
    zero=True,
)
HANDLER_SECONDS = histogram(
    "ordermesh_handler_seconds", "Time to handle one message", [SERVICE, CONSUMER], [EVERY], LATENCY_BUCKETS, zero=True
)
REDELIVERIES = counter(
    "ordermesh_redeliveries_total",
    "Messages delivered again to a consumer (after a NAK, a crash or an ack wait that ran out)",
    [SERVICE, CONSUMER],
    [EVERY],
    zero=True,
)
NATS_CONNECTED = gauge("ordermesh_nats_connected", "1 while connected to NATS", [SERVICE], [EVERY])
NATS_RECONNECTS = counter("ordermesh_nats_reconnects_total", "Reconnections to NATS", [SERVICE], [EVERY], zero=True)
NATS_SLOW_CONSUMERS = counter(
    "ordermesh_nats_slow_consumers_total",
    "Messages the NATS client dropped because a subscription fell behind (slow consumer)",
    [SERVICE],
    [EVERY],
    zero=True,
)
HEARTBEATS = counter("ordermesh_heartbeats_total", "Heartbeats published", [SERVICE], [EVERY], zero=True)
CONSUMER_PENDING = gauge(
    "ordermesh_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (polled every few seconds; the keeper's at each fill)",
    [SERVICE, STREAM, CONSUMER],
    [EVERY],
)
CONSUMER_ACK_PENDING = gauge(
    "ordermesh_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not acknowledged yet (polled every few seconds)",
    [SERVICE, STREAM, CONSUMER],
    [EVERY],
)
STREAM_MESSAGES = gauge(
    "ordermesh_stream_messages", "Messages stored in the stream (polled by every service)", [STREAM], [EVERY]
)
STREAM_BYTES = gauge(
    "ordermesh_stream_bytes", "Bytes stored in the stream (polled by every service)", [STREAM], [EVERY]
)

# --------------------------------------------------------------------------------------------- order flow

HOP_SECONDS = histogram(
    "ordermesh_hop_latency_seconds",
    "Latency of one hop of an order's path: intent_to_order (sizer), order_to_command (router), command_to_ack and "
    "intent_to_fill (gateway)",
    [HOP],
    HOPS,
    LATENCY_BUCKETS,
    zero=True,
)
REFUSALS = counter(
    "ordermesh_refusals_total",
    "Intents and orders refused, by the service that refused them and the refusal's category (sizer: "
    "IntentRejected, router: OrderDenied, gateway: OrderRejected by the broker)",
    [Label("service", HOPS), CATEGORY],
    HOPS,
    zero=True,
)

# ---------------------------------------------------------------------------------------------------- sizer

DEMO_INTENTS = counter(
    "ordermesh_demo_intents_total",
    "Intents the demo strategies sent, by strategy and outcome (filled, refused, no outcome in time)",
    [Label("strategy", bound="demo.strategies"), Label("outcome", ("filled", "refused", "no_outcome"))],
    [DEMO],
)
INTENTS = counter(
    "ordermesh_intents_total",
    "Intents handled by the sizer, by outcome",
    [Label("outcome", ("sized", "rejected"))],
    [SIZER],
    zero=True,
)
# Sizing is pure computation of a few microseconds: finer buckets than the hops'.
SIZING_BUCKETS = (
    0.000002, 0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.00025, 0.001, 0.01,
)  # fmt: skip
SIZING_STATUSES = (
    "ok", "calculated", "fallback", "zero", "fee_blocked", "min_lot_over_cap", "invalid", "unknown_instrument",
    "no_price", "insufficient_margin",
)  # fmt: skip
SIZING_SECONDS = histogram(
    "ordermesh_sizing_seconds",
    "Time to size one intent (the computation, without the account and instrument reads), by method",
    [METHOD],
    [SIZER],
    SIZING_BUCKETS,
)
SIZINGS = counter(
    "ordermesh_sizings_total",
    "Sizing outcomes by method and status",
    [METHOD, Label("status", SIZING_STATUSES)],
    [SIZER],
)

# --------------------------------------------------------------------------------------------------- router

ORDERS = counter(
    "ordermesh_orders_total",
    "Orders by status reached (router)",
    [Label("status", tuple(s.value for s in OrderStatus))],
    [ROUTER],
    zero=True,
)
INVALID_EVENTS = counter(
    "ordermesh_invalid_order_events_total",
    "Order events refused by the state machine (logged, never fanned out), by event type and the order's status",
    [Label("event", bound="execution event types"), Label("status", tuple(s.value for s in OrderStatus))],
    [ROUTER],
)
ROUTER_DECISION_SECONDS = histogram(
    "ordermesh_router_decision_seconds", "Routing and every risk rule for one order", [], [ROUTER], LATENCY_BUCKETS
)
ROUTER_PARTITIONS_CONFIGURED = gauge(
    "ordermesh_router_partitions",
    "The account partitions configured (router.partitions): each needs an owner",
    [],
    [ROUTER],
)
ROUTER_PARTITIONS = gauge(
    "ordermesh_router_partitions_held",
    "1 for each account partition this router holds now (routes its orders), 0 for one it held before",
    [Label("partition", bound="0 .. router.partitions - 1")],
    [ROUTER],
)
TRADING_STATE = gauge(
    "ordermesh_trading_state",
    "1 for the trading state each scope is in, 0 for the others: scope_kind global (scope 'global'), account "
    "(scope: the account, every configured one) or strategy (scope: account/strategy, those ever set)",
    [
        Label("scope_kind", ("global", "account", "strategy")),
        Label("scope", bound="'global', accounts, account/strategy pairs an operator set"),
        Label("state", tuple(s.value for s in TradingState)),
    ],
    [ROUTER],
)
DAILY_LOSS_USED = gauge(
    "ordermesh_daily_loss_limit_used_ratio",
    "Loss since the start of the UTC day as a share of the account's daily_loss_limit (1: the account is halted; "
    "negative: a gain); only accounts with a limit",
    [ACCOUNT],
    [ROUTER],
)

# -------------------------------------------------------------------------------------------------- gateway

COMMANDS = counter(
    "ordermesh_commands_total",
    "Broker commands executed by a gateway, by outcome (ok, rejected, unknown, invalid, expired; a cancel: the "
    "event it produced)",
    [BROKER, COMMAND, Label("outcome", bound="ok, rejected, unknown, invalid, expired, execution event types")],
    [GATEWAY],
)
FILLS = counter(
    "ordermesh_fills_total",
    "Fills published (gateway) and applied (keeper)",
    [Label("service", (GATEWAY, KEEPER)), BROKER],
    [GATEWAY, KEEPER],
    zero=True,
)
BROKER_CONNECTED = gauge(
    "ordermesh_broker_connected", "1 while the gateway's broker connection is up", [BROKER], [GATEWAY]
)
GATEWAY_ACTIVE = gauge(
    "ordermesh_gateway_active",
    "1 while this gateway holds its broker connection's lease (active), 0 while it waits as a standby",
    [BROKER],
    [GATEWAY],
)
BROKER_REQUEST_SECONDS = histogram(
    "ordermesh_broker_request_seconds",
    "Broker request latency by operation",
    [BROKER, Label("operation", ("place_order", "cancel_order", "modify_order"))],
    [GATEWAY],
    LATENCY_BUCKETS,
    zero=True,
)
QUOTES = counter("ordermesh_quotes_total", "Quotes published", [BROKER], [GATEWAY], zero=True)
UNKNOWN_ORDER_UPDATES = counter(
    "ordermesh_unknown_order_updates_total",
    "Adapter updates for orders the gateway has no command for",
    [BROKER],
    [GATEWAY],
    zero=True,
)
BROKER_UNRESOLVED = gauge(
    "ordermesh_broker_unresolved_orders",
    "Orders and tickets whose outcome the adapter could not settle without guessing (`ordermesh orders --unknown`)",
    [BROKER],
    [GATEWAY],
)
BROKER_RECONNECTS = counter(
    "ordermesh_broker_reconnects_total", "Broker connections re-established", [BROKER], [GATEWAY], zero=True
)
BROKER_RATE_LIMITED = counter(
    "ordermesh_broker_rate_limited_total",
    "Answers 429/418 (rate limited), each followed by a back-off",
    [BROKER],
    [GATEWAY],
    zero=True,
)
BROKER_RATE_LIMIT_USED = gauge(
    "ordermesh_broker_rate_limit_used_ratio",
    "Share of the broker's request-rate limit used in the current window (Binance: the request weight of the "
    "minute over the IP's limit); 0 for a broker without one",
    [BROKER],
    [GATEWAY],
    zero=True,
)
# Transaction cost analysis (per new fill). Slippage as a ratio: 0.0001 is one basis point.
SLIPPAGE_BUCKETS = (
    -0.005, -0.001, -0.0005, -0.0002, -0.0001, -0.00005, 0.0, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.0025, 0.005,
    0.01,
)  # fmt: skip
FILL_SLIPPAGE = histogram(
    "ordermesh_fill_slippage_ratio",
    "Slippage of each fill against its reference price, as a ratio (0.0001 = 1 bp; positive: worse than the reference)",
    [BROKER, SYMBOL],
    [GATEWAY],
    SLIPPAGE_BUCKETS,
)
COMMISSIONS = counter(
    "ordermesh_commissions_total",
    "Commissions charged on fills, in the charged asset",
    [BROKER, SYMBOL, Label("asset", bound="currencies and assets commissions are charged in")],
    [GATEWAY],
)
BROKER_LAST_HEARTBEAT = gauge(
    "ordermesh_broker_last_heartbeat_timestamp_seconds",
    "Time of the last good broker heartbeat",
    [BROKER],
    (*BINANCE, *MT5),
)
BROKER_BAD_ANSWERS = counter(
    "ordermesh_broker_bad_answers_total",
    "Broker answers an adapter could not read (logged with the task; the task goes on)",
    [BROKER, Label("task", bound="the adapter's background tasks")],
    (*BINANCE, *MT5),
)

# Binance
BROKER_ENDPOINT_SECONDS = histogram(
    "ordermesh_broker_endpoint_seconds",
    "Latency of one REST request to the broker, by endpoint (e.g. 'POST /api/v3/order')",
    [BROKER, Label("endpoint", bound="the adapter's REST endpoints")],
    BINANCE,
    LATENCY_BUCKETS,
)
BROKER_WEIGHT_USED = gauge(
    "ordermesh_broker_weight_used",
    "Request weight used in the current minute, as the broker last reported it (X-MBX-USED-WEIGHT-1M)",
    [BROKER],
    BINANCE,
)
BROKER_WEIGHT_WAIT_SECONDS = counter(
    "ordermesh_broker_weight_wait_seconds_total",
    "Time requests waited for the next minute because the request-weight budget was spent",
    [BROKER],
    BINANCE,
)
PROTECTION_FAILURES = counter(
    "ordermesh_protection_failures_total",
    "Attached stop-loss / take-profit orders the broker refused (the position is not protected)",
    [BROKER],
    BINANCE,
)
BROKER_AUTHENTICATED = gauge(
    "ordermesh_broker_authenticated",
    "1 while the broker accepts the gateway's API key, 0 while it refuses it (nothing is placed then)",
    [BROKER],
    BINANCE,
)
BROKER_CLOCK_OFFSET = gauge(
    "ordermesh_broker_clock_offset_seconds",
    "The broker's clock minus ours, as last measured (applied to signed requests)",
    [BROKER],
    BINANCE,
)
BROKER_FILL_LAG_CHECKS = counter(
    "ordermesh_broker_fill_lag_checks_total",
    "Reads of an order's trades that did not yet cover what the broker says the order executed",
    [BROKER],
    BINANCE,
)
BROKER_ORDERS_MISSING_FILLS = gauge(
    "ordermesh_broker_orders_missing_fills",
    "Orders whose executed quantity their known fills do not cover yet (their trades are read until they do)",
    [BROKER],
    BINANCE,
)

# MetaTrader 5
MT5_REQUEST_SECONDS = histogram(
    "ordermesh_mt5_request_seconds",
    "Round trip of one request to the MT5 expert advisor, by action",
    [BROKER, Label("action", bound="the expert advisor's actions")],
    MT5,
    LATENCY_BUCKETS,
)
MT5_AMBIGUOUS = counter(
    "ordermesh_mt5_ambiguous_total",
    "MT5 tickets or unknown-outcome orders reconciliation could not match uniquely (reported, never guessed)",
    [BROKER, Label("kind", bound="the reconciliation's cases")],
    MT5,
)
MT5_RESYNCS = counter(
    "ordermesh_mt5_resyncs_total",
    "Resynchronisations with the MT5 expert advisor after a request timed out (late answers drained)",
    [BROKER],
    MT5,
)
MT5_SUBSCRIPTIONS = counter(
    "ordermesh_mt5_subscriptions_total",
    "Tick subscriptions (re)sent to the MT5 expert advisor, by reason",
    [BROKER, Label("reason", ("connect", "reload", "stale"))],
    MT5,
)

# --------------------------------------------------------------------------------------------------- keeper

KEEPER_APPLIED_SEQ = gauge(
    "ordermesh_keeper_applied_sequence", "Last OM_EXEC stream sequence the keeper applied", [], [KEEPER]
)
DUPLICATE_FILLS = counter(
    "ordermesh_keeper_duplicate_fills_total", "Fills seen again and not applied (keeper)", [], [KEEPER]
)
EQUITY_POINTS = counter(
    "ordermesh_equity_points_total",
    "Equity-curve points published, by reason",
    [Label("reason", ("fill", "interval"))],
    [KEEPER],
    zero=True,
)
RECON_DIFFS = counter(
    "ordermesh_reconciliation_differences_total",
    "Positions found to differ from the broker's",
    [BROKER],
    [KEEPER],
    zero=True,
)
RECON_OPEN_DIFFS = gauge(
    "ordermesh_reconciliation_open_differences",
    "Differences found by the latest reconciliation with the broker",
    [BROKER],
    [KEEPER],
    zero=True,
)
ACCOUNT_BALANCE = gauge(
    "ordermesh_account_balance",
    "Balance: deposit + realized PnL - commissions - swaps, in the account currency",
    [ACCOUNT, CURRENCY],
    [KEEPER],
)
ACCOUNT_EQUITY = gauge(
    "ordermesh_account_equity",
    "Equity: balance + unrealized PnL, in the account currency",
    [ACCOUNT, CURRENCY],
    [KEEPER],
)
ACCOUNT_MARGIN_USED = gauge(
    "ordermesh_account_margin_used",
    "Margin used by open positions, in the account currency",
    [ACCOUNT, CURRENCY],
    [KEEPER],
)
ACCOUNT_MARGIN_USED_RATIO = gauge(
    "ordermesh_account_margin_used_ratio",
    "Margin used over equity (+Inf when equity is not positive while margin is used)",
    [ACCOUNT],
    [KEEPER],
)
ACCOUNT_REALIZED_PNL = gauge(
    "ordermesh_account_realized_pnl", "Realized PnL, in the account currency", [ACCOUNT, CURRENCY], [KEEPER]
)
ACCOUNT_UNREALIZED_PNL = gauge(
    "ordermesh_account_unrealized_pnl",
    "Unrealized PnL at the latest quotes, in the account currency",
    [ACCOUNT, CURRENCY],
    [KEEPER],
)
POSITION_QTY = gauge(
    "ordermesh_position_quantity",
    "Open position in lots (signed: long > 0) per account, strategy and symbol; sum by account and symbol for the "
    "account's net",
    [ACCOUNT, STRATEGY, SYMBOL],
    [KEEPER],
)
POSITION_REALIZED_PNL = gauge(
    "ordermesh_position_realized_pnl",
    "Realized PnL per account, strategy and symbol, in the symbol's quote currency (hedging accounts: open tickets)",
    [ACCOUNT, STRATEGY, SYMBOL, CURRENCY],
    [KEEPER],
)
POSITION_UNREALIZED_PNL = gauge(
    "ordermesh_position_unrealized_pnl",
    "Unrealized PnL at the latest quote per account, strategy and symbol, in the symbol's quote currency",
    [ACCOUNT, STRATEGY, SYMBOL, CURRENCY],
    [KEEPER],
)


# ---------------------------------------------------------------------------------------------- per process


def _selected(groups: Iterable[str]) -> list[Family]:
    chosen = {EVERY, *groups}
    return [f for f in FAMILIES if chosen.intersection(f.exported_by)]


def registry(groups: Iterable[str]) -> CollectorRegistry:
    """What one service serves on ``/metrics``: the families of its groups (its kind, ``gateway:<type>``), and the
    process and Python collectors."""
    reg = CollectorRegistry(auto_describe=True)
    for family in _selected(groups):
        reg.register(family.metric)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def start_at_zero(groups: Iterable[str], values: Mapping[str, Sequence[str]]) -> None:
    """Create, at zero, every series of the groups' ``zero`` families whose label values are known: ``values`` (the
    service's own: its kind, consumers, broker ids) or else the label's enumeration. A family with a label of no
    known value is left alone."""
    for family in _selected(groups):
        if not family.zero or not family.labels:
            continue
        choices = [tuple(values.get(label.name, label.values)) for label in family.labels]
        for combo in itertools.product(*choices):
            family.metric.labels(*combo)


# ------------------------------------------------------------------------ gauges set from a service's state


class _JetStream(Protocol):
    async def consumer_info(self, stream: str, consumer: str) -> Any: ...
    async def stream_info(self, name: str) -> Any: ...


async def observe_jetstream(
    js: _JetStream, service: str, consumers: Iterable[tuple[str, str]], streams: Iterable[str] = STREAMS
) -> None:
    """Backlog of the service's durable consumers ((stream, durable) pairs) and the size of each stream. A stream
    or consumer that does not exist (yet) is skipped; NATS errors propagate to the caller's loop."""
    import nats.js.errors

    for stream, durable in consumers:
        try:
            info = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            continue
        CONSUMER_PENDING.labels(service, stream, durable).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(service, stream, durable).set(info.num_ack_pending or 0)
    for stream in streams:
        try:
            state = (await js.stream_info(stream)).state
        except nats.js.errors.NotFoundError:
            continue
        STREAM_MESSAGES.labels(stream).set(state.messages or 0)
        STREAM_BYTES.labels(stream).set(state.bytes or 0)


def observe_trading(
    global_state: TradingState,
    accounts: Mapping[str, TradingState],
    strategies: Mapping[tuple[str, str], TradingState],
    known_accounts: Iterable[str] = (),
) -> None:
    """``ordermesh_trading_state``: one series per scope and state, 1 for the scope's state (router)."""
    scopes = [("global", "global", global_state)]
    scopes += [
        ("account", a, accounts.get(a, TradingState.ACTIVE)) for a in sorted(set(known_accounts) | set(accounts))
    ]
    scopes += [("strategy", f"{a}/{s}", state) for (a, s), state in sorted(strategies.items())]
    TRADING_STATE.clear()
    for kind, scope, state in scopes:
        for option in TradingState:
            TRADING_STATE.labels(kind, scope, option.value).set(1 if option is state else 0)


def observe_daily_loss(losses: Mapping[str, tuple[Decimal, Decimal] | None]) -> None:
    """``ordermesh_daily_loss_limit_used_ratio`` from (loss, limit) per account (None: no limit or no figures)."""
    DAILY_LOSS_USED.clear()
    for account, found in sorted(losses.items()):
        if found is not None and found[1] > 0:
            DAILY_LOSS_USED.labels(account).set(float(found[0] / found[1]))


class _AccountState(Protocol):
    account: str
    currency: str
    balance: Decimal
    equity: Decimal
    margin_used: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal


class _Position(Protocol):
    account: str
    symbol: str
    quantity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    strategy_id: str | None


def observe_books(
    states: Iterable[_AccountState], positions: Iterable[_Position], quote_currency: Mapping[str, str]
) -> None:
    """Account figures and per-strategy positions (keeper), replacing the previous ones (a closed position's
    series goes away)."""
    money = (ACCOUNT_BALANCE, ACCOUNT_EQUITY, ACCOUNT_MARGIN_USED, ACCOUNT_REALIZED_PNL, ACCOUNT_UNREALIZED_PNL)
    for g in (*money, ACCOUNT_MARGIN_USED_RATIO, POSITION_QTY, POSITION_REALIZED_PNL, POSITION_UNREALIZED_PNL):
        g.clear()
    for s in states:
        for g, value in zip(money, (s.balance, s.equity, s.margin_used, s.realized_pnl, s.unrealized_pnl), strict=True):
            g.labels(s.account, s.currency).set(float(value))
        ratio = float(s.margin_used / s.equity) if s.equity > 0 else (float("inf") if s.margin_used > 0 else 0.0)
        ACCOUNT_MARGIN_USED_RATIO.labels(s.account).set(ratio)
    summed: dict[tuple[str, str, str], list[Decimal]] = {}
    for p in positions:
        row = summed.setdefault((p.account, p.strategy_id or "", p.symbol), [Decimal(0)] * 3)
        row[0] += p.quantity
        row[1] += p.realized_pnl
        row[2] += p.unrealized_pnl
    for (account, strategy, symbol), (qty, realized, unrealized) in sorted(summed.items()):
        ccy = quote_currency.get(symbol, "unknown")
        if qty:
            POSITION_QTY.labels(account, strategy, symbol).set(float(qty))
        POSITION_REALIZED_PNL.labels(account, strategy, symbol, ccy).set(float(realized))
        POSITION_UNREALIZED_PNL.labels(account, strategy, symbol, ccy).set(float(unrealized))
