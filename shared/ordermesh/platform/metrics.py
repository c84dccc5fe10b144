"""Prometheus metrics, defined once. Names follow ``ordermesh_<what>_<unit>``; one name per idea across
services, told apart by the ``service`` label."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets from 50 µs to 10 s: local hops are sub-millisecond, broker round trips are not.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

MESSAGES = Counter(
    "ordermesh_messages_total",
    "Messages handled by a consumer, by outcome",
    ["service", "consumer", "outcome"],
)
BAD_MESSAGES = Counter(
    "ordermesh_bad_messages_total",
    "Messages refused before handling (undecodable, schema_version, wrong_type, invalid, handler_failed)",
    ["service", "reason"],
)
HANDLER_ERRORS = Counter(
    "ordermesh_handler_errors_total", "Handler exceptions (message redelivered)", ["service", "consumer"]
)
HANDLER_SECONDS = Histogram(
    "ordermesh_handler_seconds",
    "Time to handle one message",
    ["service", "consumer"],
    buckets=LATENCY_BUCKETS,
)
HOP_SECONDS = Histogram(
    "ordermesh_hop_latency_seconds",
    "Latency of one hop of an order's path (intent_to_order, order_to_command, command_to_ack, intent_to_fill)",
    ["hop"],
    buckets=LATENCY_BUCKETS,
)
NATS_CONNECTED = Gauge("ordermesh_nats_connected", "1 while connected to NATS", ["service"])
NATS_RECONNECTS = Counter("ordermesh_nats_reconnects_total", "Reconnections to NATS", ["service"])
HEARTBEATS = Counter("ordermesh_heartbeats_total", "Heartbeats published", ["service"])

INTENTS = Counter("ordermesh_intents_total", "Intents handled by the sizer, by outcome", ["outcome"])
ORDERS = Counter("ordermesh_orders_total", "Orders by status reached", ["status"])
INVALID_EVENTS = Counter(
    "ordermesh_invalid_order_events_total",
    "Order events refused by the state machine (logged, never fanned out)",
    ["event", "status"],
)
ROUTER_DECISION_SECONDS = Histogram(
    "ordermesh_router_decision_seconds",
    "Routing and every risk rule for one order",
    buckets=LATENCY_BUCKETS,
)
TRADING_STATE = Gauge("ordermesh_trading_state", "Trading state by scope (0 ACTIVE, 1 REDUCING, 2 HALTED)", ["scope"])
DENIALS = Counter("ordermesh_denials_total", "Orders refused by the router, by reason category", ["category"])
COMMANDS = Counter(
    "ordermesh_commands_total", "Broker commands executed by a gateway", ["broker_id", "command", "outcome"]
)
FILLS = Counter("ordermesh_fills_total", "Fills", ["service", "broker_id"])
BROKER_CONNECTED = Gauge("ordermesh_broker_connected", "1 while the gateway's broker connection is up", ["broker_id"])
BROKER_LAST_HEARTBEAT = Gauge(
    "ordermesh_broker_last_heartbeat_timestamp_seconds",
    "Time of the last good broker heartbeat",
    ["broker_id"],
)
BROKER_REQUEST_SECONDS = Histogram(
    "ordermesh_broker_request_seconds",
    "Broker request latency by operation",
    ["broker_id", "operation"],
    buckets=LATENCY_BUCKETS,
)
QUOTES = Counter("ordermesh_quotes_total", "Quotes published", ["broker_id"])
POSITION_QTY = Gauge("ordermesh_position_quantity", "Net position", ["account", "symbol"])
KEEPER_APPLIED_SEQ = Gauge("ordermesh_keeper_applied_sequence", "Last exec-stream sequence applied", ["instance"])
CONSUMER_PENDING = Gauge(
    "ordermesh_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer",
    ["consumer"],
)

# Sizing is pure computation of a few microseconds: finer buckets than the hops'.
SIZING_BUCKETS = (
    0.000002, 0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.00025, 0.001, 0.01,
)  # fmt: skip
SIZING_SECONDS = Histogram(
    "ordermesh_sizing_seconds",
    "Time to size one intent (the computation, without the account and instrument reads), by method",
    ["method"],
    buckets=SIZING_BUCKETS,
)
SIZINGS = Counter(
    "ordermesh_sizings_total",
    "Sizing outcomes by method (fixed, kelly, risk_pct) and status (ok, calculated, fallback, zero, fee_blocked, "
    "min_lot_over_cap, invalid, unknown_instrument, no_price, insufficient_margin)",
    ["method", "status"],
)
UNKNOWN_ORDER_UPDATES = Counter(
    "ordermesh_unknown_order_updates_total", "Adapter updates for orders the gateway has no command for", ["broker_id"]
)

# keeper: accounts, equity curve, reconciliation (issue 6)
ACCOUNT_EQUITY = Gauge("ordermesh_account_equity", "Account equity in the account currency (keeper)", ["account"])
EQUITY_POINTS = Counter("ordermesh_equity_points_total", "Equity-curve points published, by reason", ["reason"])
DUPLICATE_FILLS = Counter("ordermesh_keeper_duplicate_fills_total", "Fills seen again and not applied (keeper)")
RECON_DIFFS = Counter(
    "ordermesh_reconciliation_differences_total", "Positions found to differ from the broker's", ["broker_id"]
)
RECON_OPEN_DIFFS = Gauge(
    "ordermesh_reconciliation_open_differences", "Differences found by the latest reconciliation", ["broker_id"]
)

# Transaction cost analysis (gateways, per new fill).
SLIPPAGE_BUCKETS = (-50.0, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0)
SLIPPAGE_BPS = Histogram(
    "ordermesh_slippage_bps",
    "Slippage of each fill against its reference price, in basis points (positive: worse than the reference)",
    ["broker_id", "symbol"],
    buckets=SLIPPAGE_BUCKETS,
)
COMMISSIONS = Counter(
    "ordermesh_commissions_total",
    "Commissions charged on fills, in the charged asset",
    ["broker_id", "symbol", "asset"],
)
BROKER_RECONNECTS = Counter("ordermesh_broker_reconnects_total", "Broker connections re-established", ["broker_id"])
BROKER_ENDPOINT_SECONDS = Histogram(
    "ordermesh_broker_endpoint_seconds",
    "Latency of one REST request to the broker, by endpoint (e.g. 'POST /api/v3/order')",
    ["broker_id", "endpoint"],
    buckets=LATENCY_BUCKETS,
)
BROKER_WEIGHT_USED = Gauge(
    "ordermesh_broker_weight_used",
    "Request weight used in the current minute, as the broker last reported it (X-MBX-USED-WEIGHT-1M)",
    ["broker_id"],
)
BROKER_WEIGHT_WAIT_SECONDS = Counter(
    "ordermesh_broker_weight_wait_seconds_total",
    "Time requests waited for the next minute because the request-weight budget was spent",
    ["broker_id"],
)
BROKER_RATE_LIMITED = Counter(
    "ordermesh_broker_rate_limited_total", "Answers 429/418 (rate limited), each followed by a back-off", ["broker_id"]
)
PROTECTION_FAILURES = Counter(
    "ordermesh_protection_failures_total",
    "Attached stop-loss / take-profit orders the broker refused (the position is not protected)",
    ["broker_id"],
)
BROKER_BAD_ANSWERS = Counter(
    "ordermesh_broker_bad_answers_total",
    "Broker answers an adapter could not read (logged with the task; the task goes on)",
    ["broker_id", "task"],
)
MT5_REQUEST_SECONDS = Histogram(
    "ordermesh_mt5_request_seconds",
    "Round trip of one request to the MT5 expert advisor, by action",
    ["broker_id", "action"],
    buckets=LATENCY_BUCKETS,
)
MT5_AMBIGUOUS = Counter(
    "ordermesh_mt5_ambiguous_total",
    "MT5 tickets or unknown-outcome orders reconciliation could not match uniquely (reported, never guessed)",
    ["broker_id", "kind"],
)
MT5_RESYNCS = Counter(
    "ordermesh_mt5_resyncs_total",
    "Resynchronisations with the MT5 expert advisor after a request timed out (late answers drained)",
    ["broker_id"],
)
MT5_SUBSCRIPTIONS = Counter(
    "ordermesh_mt5_subscriptions_total",
    "Tick subscriptions (re)sent to the MT5 expert advisor, by reason (connect, reload, stale)",
    ["broker_id", "reason"],
)
BROKER_AUTHENTICATED = Gauge(
    "ordermesh_broker_authenticated",
    "1 while the broker accepts the gateway's API key, 0 while it refuses it (nothing is placed then)",
    ["broker_id"],
)
BROKER_CLOCK_OFFSET = Gauge(
    "ordermesh_broker_clock_offset_seconds",
    "The broker's clock minus ours, as last measured (applied to signed requests)",
    ["broker_id"],
)
BROKER_FILL_LAG_CHECKS = Counter(
    "ordermesh_broker_fill_lag_checks_total",
    "Reads of an order's trades that did not yet cover what the broker says the order executed",
    ["broker_id"],
)
BROKER_ORDERS_MISSING_FILLS = Gauge(
    "ordermesh_broker_orders_missing_fills",
    "Orders whose executed quantity their known fills do not cover yet (their trades are read until they do)",
    ["broker_id"],
)
