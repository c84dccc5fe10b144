"""Binance spot and USD-M futures through ccxt's async client: the ``BrokerClient`` of ``type: binance_spot`` and
``type: binance_usdm`` brokers (docs/architecture.md §17).

The ccxt client is configured so that ``load_markets`` is one ``exchangeInfo`` call (``fetchCurrencies`` and
``fetchMargins`` off, ``fetchMarkets.types`` the one market type). A base-URL override (a local server, a proxy)
replaces the host of EVERY entry of ``urls['api']`` and keeps its path; the testnet uses ccxt's sandbox mode and is
never combined with an override (``set_sandbox_mode`` replaces the whole dict). Orders go through ccxt's implicit
REST methods (``privatePostOrder``, ``fapiPrivatePostOrder``, ...) with the parameters built by
``ordermesh.brokers.binance.requests``, so what is sent is exactly Binance's documented request; ccxt signs, sends
and maps errors. USD-M conditional orders (stops, attached stop-loss / take-profit) are algo orders
(``fapiPrivatePostAlgoOrder``, ``clientAlgoId``): followed in the Algo Service until they trigger, then as the order
the trigger placed (``actualOrderId``).

Money is ``Decimal`` read from Binance's raw JSON strings, never from ccxt's floats. Quantities and prices pass
through ccxt's ``amount_to_precision`` (truncation to the LOT_SIZE step) and ``price_to_precision`` (rounding to
the tick) as strings; what the venue accepted (``origQty``, ``price``) is what we report.

Idempotency and unknown outcomes: every order is kept by client order id (sent as ``newClientOrderId``). A
request that timed out or lost its connection leaves the order ``unknown`` (BrokerConnectionError); the next
place / status / cancel for it first queries the order by client order id and places only when Binance answers
"Order does not exist.". A duplicate rejection answers the existing order. Orders the gateway knew as working
before a restart come back through :meth:`BinanceSpotAdapter.resume`, and a redelivered command is resumed before
it is placed, so an order that already finished at Binance (whose client order id Binance would accept again) is
found instead of placed twice.

Fills come from ``fills[]`` of spot FULL answers and from the account's trades per symbol (``myTrades`` /
``userTrades`` from a trade-id cursor), fetched when the symbol's open orders show a change; they are kept by trade
id (``fill_id`` = trade id), so each arrives once. Every request is counted against a shared request-weight budget
(``WeightBudget``) fed by ``X-MBX-USED-WEIGHT-1M``; 429 / 418 answers wait ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import decimal
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import structlog

from ordermesh.brokers.binance.requests import (
    ALGO_TYPES,
    FUTURES_TYPES,
    OrderTerms,
    WeightBudget,
    attached_requests,
    is_algo,
    order_request,
)
from ordermesh.brokers.client import BrokerClient, Capabilities
from ordermesh.brokers.model import (
    AuthenticationError,
    Balance,
    BookLevel,
    BrokerConnectionError,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerPosition,
    InsufficientFundsError,
    ModificationError,
    OrderBook,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.reports import attached_command, attached_parent
from ordermesh.contract.wire import Liquidity, OrderType, PlaceOrder, Quote, Side, TimeInForce
from ordermesh.platform import metrics
from ordermesh.sizing.instruments import InstrumentOverride

log = structlog.get_logger("binance")

ZERO = Decimal(0)
T = TypeVar("T")

_STATES = {
    "NEW": BrokerOrderState.NEW,
    "PENDING_NEW": BrokerOrderState.NEW,
    "PARTIALLY_FILLED": BrokerOrderState.PARTIALLY_FILLED,
    "FILLED": BrokerOrderState.FILLED,
    "CANCELED": BrokerOrderState.CANCELED,
    "PENDING_CANCEL": BrokerOrderState.CANCELED,
    "REJECTED": BrokerOrderState.REJECTED,
    "EXPIRED": BrokerOrderState.EXPIRED,
    "EXPIRED_IN_MATCH": BrokerOrderState.EXPIRED,
}
_OPEN = (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED)
# A USD-M conditional (algo) order before its trigger placed an order in the matching engine. TRIGGERED / FINISHED
# name that order (``actualOrderId``), whose own status is then the order's state.
_ALGO_STATES = {
    "NEW": BrokerOrderState.NEW,
    "TRIGGERING": BrokerOrderState.NEW,
    "TRIGGERED": BrokerOrderState.NEW,
    "FINISHED": BrokerOrderState.NEW,
    "CANCELED": BrokerOrderState.CANCELED,
    "EXPIRED": BrokerOrderState.EXPIRED,
    "REJECTED": BrokerOrderState.REJECTED,  # refused by the matching engine when triggered (e.g. margin)
}
_ALGO_WAITING = ("NEW", "TRIGGERING")
_PENDING = ("sending", "unknown")


def dec(value: Any) -> Decimal:
    """A Decimal from Binance's JSON string (``"0.10000000"`` -> ``0.1``); never through float."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        raise TypeError(f"refusing a float for money: {value!r}")
    d = Decimal(str(value))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def binance_error(exc: Exception, body: Any = None) -> tuple[str | None, str]:
    """Binance's ``code`` and ``msg``: from the answer's body (kept per request), else from the body ccxt puts at
    the end of its exception message."""
    if isinstance(body, dict) and "code" in body and "msg" in body:
        return str(body["code"]), str(body["msg"])
    text = str(exc)
    start = text.find('{"code"')
    if start >= 0:
        try:
            found = json.loads(text[start:])
            return str(found.get("code")), str(found.get("msg", text))
        except ValueError:
            pass
    return None, text


def map_error(exc: Exception, body: Any = None) -> BrokerError:
    """Our error for a ccxt exception. Order matters: ccxt's InsufficientFunds and OrderNotFound are
    InvalidOrder/ExchangeError subclasses, InvalidNonce and the rate-limit errors are NetworkError subclasses."""
    code, msg = binance_error(exc, body)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFundsError(msg, code=code)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.BadSymbol):
        return SymbolNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.InvalidNonce):
        # -2015 / -1022 / -1021 (timestamp outside recvWindow): the request was refused, nothing happened
        return AuthenticationError(msg, code=code)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest):
        return OrderError(msg, code=code)
    if isinstance(exc, ccxt.NetworkError):
        return BrokerConnectionError(f"{type(exc).__name__}: outcome unknown", code=code)
    return BrokerError(msg, code=code)


# ------------------------------------------------------------------------------------------ one request


@dataclass
class _Answer:
    """What came back for one request: seen by ``on_rest_response`` in the request's own task (a context
    variable), so concurrent requests never read each other's headers or bodies (ccxt's ``last_*`` are shared)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name), None)

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


_ANSWER: contextvars.ContextVar[_Answer | None] = contextvars.ContextVar("binance_answer", default=None)


class _Observed:
    def on_rest_response(self, code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any,
                         *args: Any) -> Any:  # fmt: skip
        answer = _ANSWER.get()
        if answer is not None:
            answer.status, answer.headers, answer.body = int(code), dict(headers or {}), str(body or "")
        return super().on_rest_response(code, reason, url, method, headers, body, *args)  # type: ignore[misc]


class _SpotExchange(_Observed, ccxt.binance):  # type: ignore[misc]
    pass


class _UsdmExchange(_Observed, ccxt.binanceusdm):  # type: ignore[misc]
    """ccxt's binanceusdm with its error table chosen for a base-URL override too: ccxt picks the table by the
    real host (``https://fapi.binance.com/``), so against a local URL futures codes (-2019, -2022, -4116) would
    arrive as plain ExchangeError."""

    local_prefix: str | None = None

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:
        if self.local_prefix and url and url.startswith(self.local_prefix + "/fapi/"):
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return super().get_exceptions_by_url(url, exactOrBroad)  # type: ignore[no-any-return]


class Endpoint(NamedTuple):
    """One REST endpoint: its name in metrics, its documented request weight, ccxt's implicit method."""

    name: str
    weight: int
    method: str


class _Endpoints(NamedTuple):
    time: Endpoint
    exchange_info: Endpoint
    depth: Endpoint
    account: Endpoint
    new_order: Endpoint
    get_order: Endpoint
    cancel_order: Endpoint
    open_orders: Endpoint  # one symbol
    open_orders_all: Endpoint
    trades: Endpoint
    trades_of_order: Endpoint
    book_ticker: Endpoint


SPOT_API = _Endpoints(
    time=Endpoint("GET /api/v3/time", 1, "publicGetTime"),
    exchange_info=Endpoint("GET /api/v3/exchangeInfo", 20, "publicGetExchangeInfo"),
    depth=Endpoint("GET /api/v3/depth", 5, "publicGetDepth"),
    account=Endpoint("GET /api/v3/account", 20, "privateGetAccount"),
    new_order=Endpoint("POST /api/v3/order", 1, "privatePostOrder"),
    get_order=Endpoint("GET /api/v3/order", 4, "privateGetOrder"),
    cancel_order=Endpoint("DELETE /api/v3/order", 1, "privateDeleteOrder"),
    open_orders=Endpoint("GET /api/v3/openOrders", 6, "privateGetOpenOrders"),
    open_orders_all=Endpoint("GET /api/v3/openOrders", 80, "privateGetOpenOrders"),
    trades=Endpoint("GET /api/v3/myTrades", 20, "privateGetMyTrades"),
    trades_of_order=Endpoint("GET /api/v3/myTrades", 5, "privateGetMyTrades"),
    book_ticker=Endpoint("GET /api/v3/ticker/bookTicker", 4, "publicGetTickerBookTicker"),
)
OCO = Endpoint("POST /api/v3/orderList/oco", 1, "privatePostOrderListOco")
FUTURES_API = _Endpoints(
    time=Endpoint("GET /fapi/v1/time", 1, "fapiPublicGetTime"),
    exchange_info=Endpoint("GET /fapi/v1/exchangeInfo", 1, "fapiPublicGetExchangeInfo"),
    depth=Endpoint("GET /fapi/v1/depth", 5, "fapiPublicGetDepth"),
    account=Endpoint("GET /fapi/v3/account", 5, "fapiPrivateV3GetAccount"),
    new_order=Endpoint("POST /fapi/v1/order", 1, "fapiPrivatePostOrder"),
    get_order=Endpoint("GET /fapi/v1/order", 1, "fapiPrivateGetOrder"),
    cancel_order=Endpoint("DELETE /fapi/v1/order", 1, "fapiPrivateDeleteOrder"),
    open_orders=Endpoint("GET /fapi/v1/openOrders", 1, "fapiPrivateGetOpenOrders"),
    open_orders_all=Endpoint("GET /fapi/v1/openOrders", 40, "fapiPrivateGetOpenOrders"),
    trades=Endpoint("GET /fapi/v1/userTrades", 5, "fapiPrivateGetUserTrades"),
    trades_of_order=Endpoint("GET /fapi/v1/userTrades", 5, "fapiPrivateGetUserTrades"),
    book_ticker=Endpoint("GET /fapi/v1/ticker/bookTicker", 5, "fapiPublicGetTickerBookTicker"),
)
AMEND = Endpoint("PUT /fapi/v1/order", 1, "fapiPrivatePutOrder")
# USD-M conditional orders (docs: placing costs no IP weight, only the order-count limits)
ALGO_NEW = Endpoint("POST /fapi/v1/algoOrder", 0, "fapiPrivatePostAlgoOrder")
ALGO_GET = Endpoint("GET /fapi/v1/algoOrder", 1, "fapiPrivateGetAlgoOrder")
ALGO_CANCEL = Endpoint("DELETE /fapi/v1/algoOrder", 1, "fapiPrivateDeleteAlgoOrder")
ALGO_OPEN = Endpoint("GET /fapi/v1/openAlgoOrders", 1, "fapiPrivateGetOpenAlgoOrders")
ALGO_OPEN_ALL = Endpoint("GET /fapi/v1/openAlgoOrders", 40, "fapiPrivateGetOpenAlgoOrders")
POSITION_RISK = Endpoint("GET /fapi/v3/positionRisk", 5, "fapiPrivateV3GetPositionRisk")


# ------------------------------------------------------------------------------------------ orders


@dataclass
class _Record:
    """What we know of one order at Binance, by our client order id."""

    client_order_id: str
    symbol: str  # as the caller names it
    market: str  # ccxt unified symbol
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    order_type: OrderType
    time_in_force: TimeInForce
    venue_coid: str  # the newClientOrderId of the current leg (cancel-replace makes new legs)
    stop_price: Decimal | None = None
    reduce_only: bool = False  # futures only; Binance spot has no reduce-only
    position_id: str | None = None  # hedge mode: LONG / SHORT
    stop_loss: Decimal | None = None  # attached: placed once the order has filled
    take_profit: Decimal | None = None
    parent: str | None = None  # an attached stop-loss / take-profit: the order it protects
    algo: bool = False  # a USD-M conditional order: placed through the Algo Order API (clientAlgoId = venue_coid)
    algo_id: str = ""
    algo_status: str = ""  # NEW / TRIGGERED / FINISHED / CANCELED / EXPIRED / REJECTED
    state: str = "sending"  # sending | unknown | a BrokerOrderState value
    order_id: str = ""  # Binance's orderId; of an algo order, the order its trigger placed (actualOrderId)
    legs: int = 0
    prior_filled: Decimal = ZERO  # executed by earlier legs (modify = cancel-replace)
    leg_filled: Decimal = ZERO  # executedQty of the current leg
    fills: dict[str, BrokerFill] = field(default_factory=dict)
    protected: bool = False  # its attached orders are placed
    closed_at: float = 0.0  # monotonic time it reached a final state (pruned a while after)
    command: PlaceOrder | None = None  # the order as commanded; None for one adopted from Binance

    @property
    def pending(self) -> bool:
        return self.state in _PENDING

    @property
    def working(self) -> bool:
        return not self.pending and BrokerOrderState(self.state) in _OPEN

    @property
    def waiting(self) -> bool:
        """An algo order not triggered yet: in the Algo Service, not in the matching engine."""
        return self.algo and not self.order_id and self.working

    def view(self) -> BrokerOrder:
        state = BrokerOrderState.NEW if self.pending else BrokerOrderState(self.state)
        fills = sorted(self.fills.values(), key=lambda f: (f.ts_ns, int(f.fill_id) if f.fill_id.isdigit() else 0))
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.order_id or self.algo_id,  # an algo order: its algoId until it triggers
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            state=state,
            filled_qty=self.prior_filled + self.leg_filled,
            limit_price=self.limit_price,
            fills=fills,
            parent_client_order_id=self.parent,
        )


def _order_type(binance_type: str) -> OrderType:
    """Our order type for a Binance one (adopted orders)."""
    if binance_type in ("STOP_LOSS", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TAKE_PROFIT"):
        return OrderType.STOP if binance_type != "TAKE_PROFIT" else OrderType.STOP_LIMIT
    if binance_type in ("STOP_LOSS_LIMIT", "STOP", "TAKE_PROFIT_LIMIT"):
        return OrderType.STOP_LIMIT
    return OrderType.MARKET if binance_type == "MARKET" else OrderType.LIMIT


class BinanceSpotAdapter(BrokerClient):
    """A gateway's connection to one Binance spot account (or a Binance-compatible server)."""

    MARKET_TYPE = "spot"  # ccxt's fetchMarkets type: load_markets is one exchangeInfo call
    DEFAULT_TYPE = "spot"
    API = "api"  # the weight budget's pool: spot and futures are limited separately
    DEFAULT_WEIGHT_LIMIT = 6000
    FUTURES = False
    EP = SPOT_API
    DUPLICATE = ("-2010", "Duplicate order sent.")
    capabilities = Capabilities(places_protective_orders=True, streams_quotes=True, reports_instruments=True)

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        return _SpotExchange(config)

    def __init__(
        self,
        broker_id: str,
        *,
        api_key: str = "",
        api_secret: str = "",
        base_url: str | None = None,
        testnet: bool = False,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        currency: str = "USDT",
        max_backoff_s: float = 30.0,
        max_rate_limit_retries: int = 3,
        poll_interval_s: float = 1.0,
        symbols: Iterable[str] = (),
        heartbeat_interval_s: float = 5.0,
        quote_interval_s: float = 1.0,
        reconcile_lookback_s: float = 86400.0,
        weight_headroom: float = 0.9,
        budget: WeightBudget | None = None,
    ) -> None:
        super().__init__(broker_id)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.currency = currency
        self.max_backoff_s = max_backoff_s
        self.max_rate_limit_retries = max_rate_limit_retries
        self.poll_interval_s = poll_interval_s
        self.symbols = list(symbols)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.quote_interval_s = quote_interval_s
        self.reconcile_lookback_s = reconcile_lookback_s
        self.recv_window_ms = recv_window_ms
        self.log = log.bind(broker_id=broker_id)
        self.exchange = self._new_exchange(
            # ccxt's own throttler paces each client at a fixed rate and knows nothing of the other clients on the
            # IP; the WeightBudget below, fed by Binance's own count, replaces it
            {"apiKey": api_key, "secret": api_secret, "enableRateLimit": False, "timeout": int(timeout_s * 1000)}
        )
        # ccxt logs every request's headers (X-MBX-APIKEY) and signed URL at DEBUG: its own logger, never below INFO
        self.exchange.logger = logging.getLogger("ordermesh.brokers.binance.adapter.ccxt")
        self.exchange.logger.setLevel(logging.INFO)
        opts = self.exchange.options
        opts["defaultType"] = self.DEFAULT_TYPE
        opts["fetchCurrencies"] = False
        opts["fetchMargins"] = False
        opts["fetchMarkets"] = {**opts.get("fetchMarkets", {}), "types": [self.MARKET_TYPE]}
        opts["recvWindow"] = recv_window_ms
        opts["warnOnFetchOpenOrdersWithoutSymbol"] = False
        if self.base_url:
            self.exchange.urls["api"] = self.override_urls(self.exchange.urls["api"], self.base_url)
        elif testnet:
            self.exchange.set_sandbox_mode(True)
        host = self.base_url or ("testnet" if testnet else "binance")
        self.budget = budget or WeightBudget.shared(host, self.API, self.DEFAULT_WEIGHT_LIMIT, weight_headroom)
        self._records: dict[str, _Record] = {}
        self._by_order_id: dict[tuple[str, str], _Record] = {}  # (market, Binance orderId) -> record
        self._foreign: set[tuple[str, str]] = set()  # orders in the account's trades that are not ours
        self._cursor: dict[str, int] = {}  # market -> the next trade id to read
        self._emitted: dict[str, BrokerOrder] = {}
        self.backoffs: list[float] = []  # seconds waited on 429/418, for metrics and tests
        self.used_weight: int | None = None  # X-MBX-USED-WEIGHT-1M of the last answer
        self.connected = False
        self._was_connected = False
        self._stale = True  # reconciliation due: on start, and after every reconnection
        self._reconcile_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.clock_offset_ms: int | None = None  # Binance's clock minus ours, from the heartbeat

    @staticmethod
    def override_urls(api: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Every ``urls['api']`` entry pointed at ``base_url``, keeping each entry's path."""
        out: dict[str, Any] = {}
        for key, value in api.items():
            if isinstance(value, str):
                out[key] = base_url + urlsplit(value).path
            elif isinstance(value, dict):
                out[key] = BinanceSpotAdapter.override_urls(value, base_url)
            else:
                out[key] = value
        return out

    # ------------------------------------------------------------------------------------ plumbing

    def amount_to_precision(self, market: str, qty: Decimal) -> str:
        """ccxt's amount precision (truncated to the step), in a local Decimal context: ccxt's
        ``decimal_to_precision`` changes the current context's precision and traps in place."""
        with decimal.localcontext():
            return str(self.exchange.amount_to_precision(market, str(qty)))

    def price_to_precision(self, market: str, price: Decimal) -> str:
        """ccxt's price precision (rounded to the tick), in a local Decimal context."""
        with decimal.localcontext():
            return str(self.exchange.price_to_precision(market, str(price)))

    async def connect(self) -> None:
        """Load the markets and reconcile (open orders, recent trades); start the heartbeat. Binance unreachable
        is not fatal: markets load on first use, reconciliation runs once Binance answers."""
        try:
            await self._markets()
            await self._catch_up()
        except BrokerConnectionError as exc:
            self.log.warning("Binance not reachable on connect; reconciling once it answers", error=exc.message)
        if self.heartbeat_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name=f"{self.broker_id}-heartbeat"))

    async def _ready(self) -> None:
        """Before an order: what connect could not do."""
        await self._markets()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.exchange.close()

    async def _api(self, ep: Endpoint, params: dict[str, Any] | None = None, *, weight: int | None = None) -> Any:
        return await self._call(ep.name, ep.weight if weight is None else weight, getattr(self.exchange, ep.method),
                                params or {})  # fmt: skip

    async def _call(self, endpoint: str, weight: int, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One request: the weight budget first, our error mapping, latency by endpoint; 429/418 retried after
        Retry-After (nothing was processed). A connection failure marks the broker disconnected, an answer
        connected."""
        attempt = 0
        while True:
            waited = await self.budget.acquire(weight)
            if waited:
                metrics.BROKER_WEIGHT_WAIT_SECONDS.labels(self.broker_id).inc(waited)
                self.log.warning("request weight budget spent; waited for the next minute", seconds=round(waited, 3))
            answer = _Answer()
            token = _ANSWER.set(answer)
            started = time.perf_counter()
            try:
                with decimal.localcontext():  # ccxt's precision helpers change the Decimal context in place
                    result = await fn(*args)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                self._answered(endpoint, weight, answer, started)
                metrics.BROKER_RATE_LIMITED.labels(self.broker_id).inc()
                attempt += 1
                if attempt > self.max_rate_limit_retries:
                    raise BrokerConnectionError("rate limited: retries exhausted", code="429") from exc
                wait = self._retry_after(answer)
                self.backoffs.append(wait)
                self.log.warning("rate limited; backing off", seconds=wait, attempt=attempt, endpoint=endpoint)
                await asyncio.sleep(wait)
                continue
            except ccxt.BaseError as exc:
                self._answered(endpoint, weight, answer, started)
                err = map_error(exc, answer.json())
                if isinstance(err, BrokerConnectionError):
                    self._set_connected(False)
                raise err from exc
            finally:
                _ANSWER.reset(token)
            self._answered(endpoint, weight, answer, started)
            return result

    def _answered(self, endpoint: str, weight: int, answer: _Answer, started: float) -> None:
        metrics.BROKER_ENDPOINT_SECONDS.labels(self.broker_id, endpoint).observe(time.perf_counter() - started)
        raw = answer.header("x-mbx-used-weight-1m")
        used = int(raw) if raw is not None and raw.isdigit() else None
        self.budget.release(weight, used)
        if used is not None:
            self.used_weight = used
            metrics.BROKER_WEIGHT_USED.labels(self.broker_id).set(used)
        if answer.status is not None:
            self._set_connected(True)

    def _retry_after(self, answer: _Answer) -> float:
        raw = answer.header("retry-after")
        try:
            wait = float(raw) if raw is not None else 1.0
        except ValueError:
            wait = 1.0
        return max(0.0, min(wait, self.max_backoff_s))

    def _set_connected(self, up: bool) -> None:
        if up == self.connected:
            return
        self.connected = up
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if up else 0)
        if up:
            if self._was_connected:
                metrics.BROKER_RECONNECTS.labels(self.broker_id).inc()
                self._stale = True  # what happened while we could not see: reconciled by the next poll/heartbeat
                self.log.info("Binance reachable again; reconciling")
            self._was_connected = True
        else:
            self.log.warning("Binance not reachable")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self.heartbeat()
            except Exception:  # a bug of ours must not stop the heartbeat either
                self._unreadable("heartbeat")

    def _unreadable(self, task: str, **ids: Any) -> None:
        """An answer we could not read (a field missing, not JSON): logged and counted; the task goes on."""
        metrics.BROKER_BAD_ANSWERS.labels(self.broker_id, task).inc()
        self.log.exception("unreadable answer from Binance; going on", task=task, **ids)

    async def heartbeat(self) -> bool:
        """A cheap round trip (server time, weight 1); after a reconnection, the reconciliation."""
        try:
            sent = time.time()
            answer = await self._api(self.EP.time)
            now = time.time()
            self.clock_offset_ms = int(answer["serverTime"]) - int((sent + now) * 500)
            metrics.BROKER_LAST_HEARTBEAT.labels(self.broker_id).set(now)
            if abs(self.clock_offset_ms) > self.recv_window_ms // 2:
                self.log.warning("clock differs from Binance's by more than half the recvWindow",
                                 offset_ms=self.clock_offset_ms)  # fmt: skip
            await self._catch_up()
        except BrokerError as exc:
            self.log.debug("heartbeat failed", error=exc.message)
            return False
        except (KeyError, TypeError, ValueError):
            self._unreadable("heartbeat")
            return False
        return True

    async def _markets(self) -> dict[str, Any]:
        if not self.exchange.markets:
            await self._call(self.EP.exchange_info.name, self.EP.exchange_info.weight, self.exchange.load_markets)
            self._limit_from_exchange_info()
        return self.exchange.markets

    def _limit_from_exchange_info(self) -> None:
        """The IP's REQUEST_WEIGHT per minute as exchangeInfo states it (ccxt keeps the raw answer)."""
        try:
            info = json.loads(self.exchange.last_http_response or "null")
        except ValueError:
            return
        for limit in (info or {}).get("rateLimits", []) if isinstance(info, dict) else []:
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE":
                self.budget.limit = int(limit["limit"]) // max(1, int(limit.get("intervalNum", 1)))

    async def _market(self, symbol: str) -> dict[str, Any]:
        """The ccxt market for ``BTC/USDT`` or Binance's ``BTCUSDT``."""
        markets = await self._markets()
        if symbol in markets:
            return markets[symbol]
        by_id = self.exchange.markets_by_id or {}
        if symbol in by_id:
            return by_id[symbol][0]
        raise SymbolNotFoundError(f"unknown symbol {symbol}", code="-1121")

    def _market_id(self, market: str) -> str:
        return str(self.exchange.market(market)["id"])

    # ------------------------------------------------------------------------------------ reading orders

    def _index(self, rec: _Record) -> None:
        if rec.order_id:
            self._by_order_id[(rec.market, rec.order_id)] = rec

    def _apply(self, rec: _Record, info: dict[str, Any]) -> None:
        """Fold a raw Binance order answer (POST / GET / DELETE / openOrders) into the record."""
        if info.get("orderId") is not None:
            rec.order_id = str(info["orderId"])
            self._index(rec)
        if info.get("status"):
            rec.state = _STATES.get(info["status"], BrokerOrderState.NEW).value
            if not rec.working and not rec.closed_at:
                rec.closed_at = time.monotonic()
        if info.get("executedQty") is not None:
            rec.leg_filled = dec(info["executedQty"])
        if info.get("origQty") is not None and rec.legs <= 1:
            rec.quantity = dec(info["origQty"])
        ts_ns = int(info.get("transactTime") or info.get("updateTime") or 0) * 1_000_000
        for f in info.get("fills") or []:
            fid = str(f["tradeId"])
            rec.fills.setdefault(
                fid,
                BrokerFill(
                    fill_id=fid, quantity=dec(f["qty"]), price=dec(f["price"]), commission=dec(f.get("commission")),
                    commission_asset=f.get("commissionAsset"), liquidity=Liquidity.TAKER, ts_ns=ts_ns,
                    position_id=self._fill_position(info),
                ),
            )  # fmt: skip

    def _apply_algo(self, rec: _Record, info: dict[str, Any]) -> None:
        """Fold a raw algo order answer (POST / GET ``algoOrder``, ``openAlgoOrders``) into the record: its status
        until it triggers; from then on the order its trigger placed (``actualOrderId``) is the order, folded by
        :meth:`_apply` from its own answers."""
        if info.get("algoId") is not None:
            rec.algo_id = str(info["algoId"])
        actual = str(info.get("actualOrderId") or "")
        if actual not in ("", "0") and not rec.order_id:
            rec.order_id = actual
            self._index(rec)
            self.log.info("conditional order triggered", client_order_id=rec.client_order_id, order_id=actual)
        status = str(info.get("algoStatus") or "")
        rec.algo_status = status or rec.algo_status
        if info.get("quantity") is not None and rec.legs <= 1:
            rec.quantity = dec(info["quantity"])
        if not rec.order_id and status in _ALGO_STATES:
            rec.state = _ALGO_STATES[status].value
            if not rec.working and not rec.closed_at:
                rec.closed_at = time.monotonic()

    def _fill_position(self, info: dict[str, Any]) -> str | None:
        side = info.get("positionSide")
        return side if side in ("LONG", "SHORT") else None

    def _add_trade(self, rec: _Record, info: dict[str, Any]) -> None:
        """One of the account's trades (``myTrades`` / ``userTrades``), kept by trade id."""
        fid = str(info["id"])
        rec.fills.setdefault(
            fid,
            BrokerFill(
                fill_id=fid, quantity=dec(info["qty"]), price=dec(info["price"]),
                commission=dec(info.get("commission")), commission_asset=info.get("commissionAsset"),
                liquidity=Liquidity.MAKER if info.get("isMaker", info.get("maker")) else Liquidity.TAKER,
                ts_ns=int(info.get("time") or 0) * 1_000_000, position_id=self._fill_position(info),
            ),
        )  # fmt: skip

    def _known_qty(self, rec: _Record) -> Decimal:
        return sum((f.quantity for f in rec.fills.values()), ZERO)

    async def _complete_fills(self, rec: _Record) -> None:
        """Fetch the order's own trades when Binance reports more executed than the fills we hold (a spot
        answer without fills, a futures answer, a closed order whose trades the account poll has not read)."""
        if rec.order_id and self._known_qty(rec) < rec.prior_filled + rec.leg_filled:
            params = {"symbol": self._market_id(rec.market), "orderId": rec.order_id}
            for t in await self._api(self.EP.trades_of_order, params):
                self._add_trade(rec, t)

    async def _refresh(self, rec: _Record) -> BrokerOrder:
        """Query the order by client order id and complete its fills. An algo order is queried by its
        ``clientAlgoId`` until it triggers, then the order it placed by ``orderId``."""
        if rec.algo and not rec.order_id:
            self._apply_algo(rec, await self._api(ALGO_GET, {"clientAlgoId": rec.venue_coid}))
            if not rec.order_id:
                return rec.view()
        params: dict[str, str] = {"symbol": self._market_id(rec.market)}
        if rec.algo:
            params["orderId"] = rec.order_id
        else:
            params["origClientOrderId"] = rec.venue_coid
        self._apply(rec, await self._api(self.EP.get_order, params))
        await self._complete_fills(rec)
        return rec.view()

    async def _resolve(self, rec: _Record) -> BrokerOrder | None:
        """An order whose placement outcome is unknown: the order if Binance has it, None if it never arrived."""
        try:
            view = await self._refresh(rec)
        except OrderNotFoundError:
            return None
        self.log.info("unknown outcome resolved: the order exists", client_order_id=rec.client_order_id)
        return view

    # ------------------------------------------------------------------------------------ BrokerClient

    async def validate_connection(self) -> bool:
        return await self.heartbeat()

    async def _account(self) -> dict[str, Any]:
        return await self._api(self.EP.account)  # type: ignore[no-any-return]

    async def get_balance(self) -> Balance:
        info = await self._account()
        for b in info.get("balances", []):
            if b["asset"] == self.currency:
                free, locked = dec(b["free"]), dec(b["locked"])
                total = free + locked
                return Balance(
                    currency=self.currency, balance=total, equity=total, free_margin=free, margin_used=locked
                )
        return Balance(currency=self.currency, balance=ZERO, equity=ZERO, free_margin=ZERO)

    async def get_positions(self) -> list[BrokerPosition]:
        """Spot holds no positions: every non-zero asset balance other than the account currency, as a long
        ``ASSET/CURRENCY`` position (average price unknown to the balance endpoint: 0)."""
        info = await self._account()
        markets = await self._markets()
        out = []
        for b in info.get("balances", []):
            total = dec(b["free"]) + dec(b["locked"])
            if b["asset"] == self.currency or total == 0:
                continue
            symbol = f"{b['asset']}/{self.currency}"
            out.append(
                BrokerPosition(symbol=symbol if symbol in markets else b["asset"], quantity=total, avg_price=ZERO)
            )
        return out

    def _depth_weight(self, limit: int) -> int:
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        market = await self._market(symbol)
        limit = next((n for n in (5, 10, 20, 50, 100, 500, 1000, 5000) if n >= depth), 5000)
        raw = await self._api(self.EP.depth, {"symbol": market["id"], "limit": limit}, weight=self._depth_weight(limit))
        return OrderBook(
            symbol=symbol,
            bids=[BookLevel(dec(p), dec(q)) for p, q in raw["bids"][:depth]],
            asks=[BookLevel(dec(p), dec(q)) for p, q in raw["asks"][:depth]],
            ts_ns=time.time_ns(),
        )

    def _new_record(self, order: PlaceOrder, market: str, *, state: str = "sending") -> _Record:
        parent = attached_parent(order)  # a protective order remembered by the gateway, resumed after a restart
        return _Record(
            client_order_id=order.client_order_id, symbol=order.symbol, market=market, side=order.side,
            quantity=order.quantity, limit_price=order.limit_price, order_type=order.order_type,
            time_in_force=order.time_in_force, venue_coid=order.client_order_id, stop_price=order.stop_price,
            reduce_only=order.reduce_only, position_id=order.position_id, stop_loss=order.stop_loss,
            take_profit=order.take_profit, state=state, parent=parent, protected=parent is not None,
            algo=self.FUTURES and (parent is not None or FUTURES_TYPES[order.order_type] in ALGO_TYPES), command=order,
        )  # fmt: skip

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        coid = order.client_order_id
        rec = self._records.get(coid)
        if rec is not None:
            if rec.pending:
                found = await self._resolve(rec)
                if found is not None:
                    return found
                self.log.info("unknown outcome resolved: never placed; placing now", client_order_id=coid)
                return await self._send(rec)
            return await self._refresh(rec) if rec.working else rec.view()
        if order.order_type is OrderType.LIMIT and order.limit_price is None:
            raise OrderError("limit order without a limit price")
        await self._ready()
        market = await self._market(order.symbol)
        rec = self._new_record(order, market["symbol"])
        self._terms(rec, rec.quantity)  # refuses what Binance cannot take before anything is sent
        self._records[coid] = rec
        return await self._send(rec)

    def _terms(self, rec: _Record, qty: Decimal) -> dict[str, str]:
        """The request for the record's current leg of ``qty``, at the market's precision."""
        amount = self.amount_to_precision(rec.market, qty)
        price = self.price_to_precision(rec.market, rec.limit_price) if rec.limit_price else None
        stop = self.price_to_precision(rec.market, rec.stop_price) if rec.stop_price else None
        if Decimal(amount) != qty or (price is not None and Decimal(price) != rec.limit_price):
            self.log.warning("order adjusted to the market's precision", client_order_id=rec.client_order_id,
                             amount=amount, price=price)  # fmt: skip
        terms = OrderTerms(
            symbol_id=self._market_id(rec.market), side=rec.side, order_type=rec.order_type, quantity=amount,
            limit_price=price, stop_price=stop, time_in_force=rec.time_in_force, reduce_only=rec.reduce_only,
            position_id=rec.position_id,
        )  # fmt: skip
        return order_request(terms, rec.venue_coid, futures=self.FUTURES, hedge_mode=self._hedge())

    def _hedge(self) -> bool:
        return False

    async def _send(self, rec: _Record, quantity: Decimal | None = None) -> BrokerOrder:
        """Send the record's current leg (``quantity`` defaults to the whole order)."""
        request = self._terms(rec, rec.quantity if quantity is None else quantity)
        rec.state = "sending"
        rec.legs += 1
        try:
            created = await self._api(ALGO_NEW if rec.algo else self.EP.new_order, request)
        except BrokerConnectionError:
            rec.state = "unknown"
            self.log.warning(
                "order outcome unknown until a status query resolves it", client_order_id=rec.client_order_id
            )
            raise
        except OrderError as exc:
            if (exc.code, exc.message) == self.DUPLICATE:
                self.log.info(
                    "duplicate client order id: answering the existing order", client_order_id=rec.client_order_id
                )
                rec.state = "unknown"
                return await self._refresh(rec)
            rec.state = BrokerOrderState.REJECTED.value
            if rec.legs == 1:
                self._records.pop(rec.client_order_id, None)  # never at Binance: a corrected resend may follow
            raise
        (self._apply_algo if rec.algo else self._apply)(rec, created)
        await self._complete_fills(rec)
        await self._protect(rec)
        return rec.view()

    async def resume(self, orders: Iterable[PlaceOrder]) -> None:
        """Orders the gateway knew as working before it restarted, or a command delivered again: each is looked
        up by client order id before anything else is done with it (a redelivered command is never placed
        twice, even when the first order already finished and Binance would accept its id again), and its
        current view is reported again by the next poll (report ids make that harmless)."""
        for order in orders:
            rec = self._records.get(order.client_order_id)
            if rec is not None:
                self._emitted.pop(order.client_order_id, None)
                continue
            try:
                market = (await self._market(order.symbol))["symbol"]
            except SymbolNotFoundError:
                self.log.warning("resumed order for an unknown symbol", client_order_id=order.client_order_id)
                continue
            self._records[order.client_order_id] = self._new_record(order, market, state="unknown")

    async def reconcile(self) -> list[BrokerOrder]:
        """Adopt the account's open orders that carry our client order ids (``om-...``; a cancel-replace leg
        ``om-....<n>`` belongs to ``om-...``), then read the recent trades (``reconcile_lookback_s``) of every
        symbol we trade and adopt the finished orders of ours among them. A restarted gateway thus answers their
        status, polls their fills, and never places them again. Returns the adopted orders."""
        raw = await self._api(self.EP.open_orders_all)
        if self.FUTURES:  # conditional orders waiting for their trigger live in the Algo Service
            raw = [*raw, *await self._api(ALGO_OPEN_ALL)]
        adopted = []
        for info in raw:
            rec = self._adopt(info)
            if rec is not None:
                adopted.append(rec)
        markets = {rec.market for rec in self._records.values()}
        for symbol in self.symbols:
            with contextlib.suppress(SymbolNotFoundError):
                markets.add((await self._market(symbol))["symbol"])
        for market in sorted(markets):
            adopted.extend(await self._read_trades(market))
        self._stale = False
        return [rec.view() for rec in adopted]

    def _adopt(self, info: dict[str, Any], *, reported: bool = False) -> _Record | None:
        """A record for an order of ours found at Binance (open orders, trades) that this adapter does not hold;
        None when it is not ours or already held. ``reported``: finished before we looked, so its reports were
        published by whoever placed it; the gateway is told of it again only if it resumes it."""
        algo = "algoId" in info  # from openAlgoOrders
        venue_coid = str(info.get("clientAlgoId" if algo else "clientOrderId") or "")
        coid, _, leg = venue_coid.partition(".")
        held = self._records.get(coid)
        if not coid.startswith("om-") or (held is not None and not held.pending):
            return None
        market = self._market_name(str(info["symbol"]))
        parent = None
        for kind in ("-sl", "-tp"):
            if coid.endswith(kind):
                parent = coid[: -len(kind)]
        binance_type = str(info.get("orderType") if algo else info.get("origType") or info.get("type") or "LIMIT")
        tif = info.get("timeInForce")
        rec = held or _Record(
            client_order_id=coid, symbol=market, market=market, side=Side(info["side"]),
            quantity=dec(info["quantity" if algo else "origQty"]), limit_price=dec(info.get("price")) or None,
            order_type=_order_type(binance_type), stop_price=dec(info.get("triggerPrice" if algo else "stopPrice"))
            or None, time_in_force=TimeInForce(tif) if tif in ("GTC", "IOC", "FOK") else TimeInForce.GTC,
            venue_coid=venue_coid, reduce_only=bool(info.get("reduceOnly", False)),
            position_id=self._fill_position(info), parent=parent, protected=True, algo=algo,
        )  # fmt: skip
        rec.venue_coid = venue_coid
        rec.legs = int(leg) + 1 if leg.isdigit() else 1
        (self._apply_algo if algo else self._apply)(rec, info)
        self._records[coid] = rec
        if reported and held is None and not rec.working:
            self._emitted[coid] = rec.view()
        self.log.info("order adopted", client_order_id=coid, order_id=rec.order_id, state=rec.state)
        return rec

    def _market_name(self, market_id: str) -> str:
        found = (self.exchange.markets_by_id or {}).get(market_id)
        return str(found[0]["symbol"]) if found else market_id

    async def _read_trades(self, market: str) -> list[_Record]:
        """The account's new trades in ``market`` (from the cursor, or the lookback on first read), each added to
        its order; orders of ours not held yet are looked up and adopted. Returns the adopted records."""
        adopted: list[_Record] = []
        market_id = self._market_id(market)
        while True:
            params: dict[str, Any] = {"symbol": market_id, "limit": 1000}
            if market in self._cursor:
                params["fromId"] = self._cursor[market]
            else:
                params["startTime"] = int((time.time() - self.reconcile_lookback_s) * 1000)
            trades = await self._api(self.EP.trades, params)
            for t in trades:
                key = (market, str(t["orderId"]))
                rec = self._by_order_id.get(key)
                if rec is None and key not in self._foreign:
                    info = await self._api(self.EP.get_order, {"symbol": market_id, "orderId": t["orderId"]})
                    rec = self._adopt(info, reported=True)
                    if rec is None and key not in self._by_order_id:
                        self._foreign.add(key)  # not ours: never looked up again
                    rec = self._by_order_id.get(key)
                    if rec is not None:
                        adopted.append(rec)
                if rec is not None:
                    self._add_trade(rec, t)
                self._cursor[market] = max(self._cursor.get(market, 0), int(t["id"]) + 1)
            if len(trades) < 1000:
                if market not in self._cursor:
                    self._cursor[market] = 0  # no trade in the lookback: read from the start next time
                break
        for rec in adopted:
            if not rec.working and rec.client_order_id in self._emitted:
                self._emitted[rec.client_order_id] = rec.view()  # with the trades just added
        return adopted

    def _record(self, client_order_id: str) -> _Record:
        rec = self._records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"unknown client order id {client_order_id}", code="-2013")
        return rec

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self._records.get(client_order_id)
        if rec is None:
            # not placed through this adapter and not found by the reconciliation: look among the open orders
            await self.reconcile()
            rec = self._records.get(client_order_id)
            if rec is None:
                raise OrderNotFoundError(f"unknown client order id {client_order_id}", code="-2013")
            return rec.view() if not rec.working else await self._refresh(rec)
        if rec.pending:
            found = await self._resolve(rec)
            if found is None:
                raise OrderNotFoundError(f"{client_order_id}: never reached Binance", code="-2013")
            return found
        if not rec.working:
            return rec.view()
        return await self._refresh(rec)

    async def _cancel_leg(self, rec: _Record) -> None:
        """Cancel the record's live leg and fold the answer in: an algo order not triggered yet in the Algo
        Service, the order its trigger placed by ``orderId``, any other by its client order id."""
        if rec.algo and not rec.order_id:
            answer = await self._api(ALGO_CANCEL, {"clientAlgoId": rec.venue_coid})
            # the answer is {"algoId", "clientAlgoId", "code": "200", "msg": "success"}: canceled
            self._apply_algo(rec, {"algoId": answer.get("algoId"), "algoStatus": "CANCELED"})
            return
        params: dict[str, str] = {"symbol": self._market_id(rec.market)}
        if rec.algo:
            params["orderId"] = rec.order_id
        else:
            params["origClientOrderId"] = rec.venue_coid
        self._apply(rec, self._cancel_answer(await self._api(self.EP.cancel_order, params), rec))

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self._record(client_order_id)
        if rec.pending and await self._resolve(rec) is None:
            raise OrderNotFoundError(f"{client_order_id}: never reached Binance", code="-2011")
        try:
            await self._cancel_leg(rec)
        except OrderNotFoundError:
            await self._refresh(rec)  # filled or already closed meanwhile: the current view, then the error
            if not (rec.algo and rec.order_id and rec.working):
                raise
            await self._cancel_leg(rec)  # it triggered meanwhile: cancel the order the trigger placed
        await self._complete_fills(rec)
        await self._protect(rec)
        return rec.view()

    def _cancel_answer(self, raw: dict[str, Any], rec: _Record) -> dict[str, Any]:
        """A spot cancel of an OCO leg answers the whole list: the report of this leg."""
        for report in raw.get("orderReports") or []:
            if str(report.get("clientOrderId")) == rec.venue_coid:
                return dict(report)
        return raw

    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder:
        """Cancel-replace: the working leg canceled, a new leg (``<coid>.<n>`` as newClientOrderId) for what is
        left of the new quantity at the new price. Fills of every leg stay on the order."""
        rec = self._record(client_order_id)
        if stop_price is not None:
            raise ModificationError("stop prices are not modified by the Binance spot adapter: cancel and place")
        if rec.order_type is not OrderType.LIMIT:
            raise ModificationError("only limit orders can be modified")
        if rec.pending:
            await self._resolve(rec)
        if not rec.working:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        try:
            await self._cancel_leg(rec)
        except OrderNotFoundError as exc:
            await self._refresh(rec)
            raise ModificationError(f"order {client_order_id} is no longer working", code=exc.code) from exc
        await self._complete_fills(rec)
        new_qty = rec.quantity if quantity is None else quantity
        done = rec.prior_filled + rec.leg_filled
        if new_qty <= done:
            raise ModificationError(f"order {client_order_id} already has {done} filled; leg canceled")
        rec.prior_filled, rec.leg_filled = done, ZERO
        rec.quantity = new_qty
        rec.closed_at = 0.0
        if limit_price is not None:
            rec.limit_price = limit_price
        rec.venue_coid = f"{client_order_id}.{rec.legs}"
        try:
            return await self._send(rec, new_qty - done)
        except OrderError as exc:  # the old leg is canceled, its replacement refused: the order is canceled
            rec.state = BrokerOrderState.CANCELED.value
            raise ModificationError(f"replacement refused: {exc.message}", code=exc.code) from exc

    # ------------------------------------------------------------------------------------ attached orders

    async def _protect(self, rec: _Record) -> None:
        """Once an order with a stop-loss / take-profit has finished with a fill, place its protective orders for
        what it filled (spot: an OCO list when both, since the asset can be locked once). They are orders of
        their own (``<coid>-sl`` / ``<coid>-tp``), reported with the parent's id; a failure is logged and left
        for the next poll to retry."""
        if rec.protected or rec.command is None or rec.working or rec.pending:
            return
        if rec.stop_loss is None and rec.take_profit is None:
            rec.protected = True
            return
        filled = self._protect_qty(rec)
        if filled <= 0:
            rec.protected = True
            return
        market_id = self._market_id(rec.market)
        requests = attached_requests(
            symbol_id=market_id, parent_side=rec.side, quantity=self.amount_to_precision(rec.market, filled),
            stop_loss=self.price_to_precision(rec.market, rec.stop_loss) if rec.stop_loss else None,
            take_profit=self.price_to_precision(rec.market, rec.take_profit) if rec.take_profit else None,
            client_order_id=rec.client_order_id, futures=self.FUTURES, hedge_mode=self._hedge(),
            position_id=rec.position_id,
        )  # fmt: skip
        for kind, request in requests:
            algo = is_algo(request)
            legs = [("sl", request["belowClientOrderId" if rec.side is Side.BUY else "aboveClientOrderId"]),
                    ("tp", request["aboveClientOrderId" if rec.side is Side.BUY else "belowClientOrderId"])] \
                if kind == "oco" else [(kind, request["clientAlgoId" if algo else "newClientOrderId"])]  # fmt: skip
            children = []
            for child_kind, coid in legs:
                held = self._records.get(coid)
                if held is not None and held.pending and await self._resolve(held) is None:
                    del self._records[coid]  # an earlier attempt never reached Binance: send it again
                    held = None
                if held is not None:
                    continue
                child_cmd = attached_command(rec.command, child_kind, dec(request["quantity"]))  # type: ignore[arg-type]
                assert child_cmd.client_order_id == coid
                child = self._new_record(child_cmd, rec.market, state="unknown")
                child.legs = 1
                self._records[coid] = child
                children.append(child)
            if not children:
                continue
            try:
                answer = await self._api(OCO if kind == "oco" else ALGO_NEW if algo else self.EP.new_order, request)
            except BrokerConnectionError:
                self.log.warning("protective order outcome unknown; looked up (and sent if missing) by the next poll",
                                 client_order_id=rec.client_order_id)  # fmt: skip
                return  # not protected yet: the next poll comes back here
            except BrokerError as exc:
                for child in children:
                    self._records.pop(child.client_order_id, None)
                self.log.error("protective order refused: the position is NOT protected",
                               client_order_id=rec.client_order_id, code=exc.code, reason=exc.message)  # fmt: skip
                metrics.PROTECTION_FAILURES.labels(self.broker_id).inc()
                continue
            for report in answer.get("orderReports") or [answer]:
                child = self._records.get(str(report.get("clientAlgoId" if algo else "clientOrderId")))
                if child is not None:
                    (self._apply_algo if algo else self._apply)(child, report)
        rec.protected = True

    def _protect_qty(self, rec: _Record) -> Decimal:
        """What the protective orders cover: what was bought, less a commission taken in the bought asset (spot
        holds only that); on futures the filled quantity."""
        filled = rec.prior_filled + rec.leg_filled
        if self.FUTURES or rec.side is not Side.BUY:
            return filled
        base = self.exchange.market(rec.market)["base"]
        return filled - sum((f.commission for f in rec.fills.values() if f.commission_asset == base), ZERO)

    # ------------------------------------------------------------------------------------ polling

    async def _catch_up(self) -> None:
        if self._stale:
            async with self._reconcile_lock:
                if self._stale:
                    await self.reconcile()

    async def poll_working(self) -> list[BrokerOrder]:
        """One poll: per symbol with working orders, its open orders (cheap), then the account's trades when
        something changed; orders gone from the open list are queried once for their final state. Returns the
        views that changed since last reported."""
        try:
            await self._catch_up()
        except BrokerError as exc:
            self.log.warning("reconciliation failed; retried by the next poll", error=exc.message)
        except Exception:  # retried by the next poll too: the reconciliation is still due
            self._unreadable("reconcile")
        by_market: dict[str, list[_Record]] = {}
        for rec in list(self._records.values()):
            unprotected = not rec.protected and (rec.stop_loss is not None or rec.take_profit is not None)
            if rec.pending or rec.working or unprotected:
                by_market.setdefault(rec.market, []).append(rec)
        for market, recs in by_market.items():
            try:
                await self._poll_market(market, recs)
            except BrokerError as exc:
                self.log.warning("order poll failed", symbol=market, error=exc.message)
            except Exception:  # an answer we could not read must not stop the polling of every order
                self._unreadable("order_poll", symbol=market)
        changed = []
        for coid, rec in list(self._records.items()):
            if rec.pending:
                continue
            view = rec.view()
            if self._emitted.get(coid) != view:
                self._emitted[coid] = view
                changed.append(view)
        self._prune()
        return changed

    async def _poll_market(self, market: str, recs: list[_Record]) -> None:
        for rec in recs:
            if rec.pending:
                await self._resolve(rec)
        waiting = [rec for rec in recs if rec.waiting]
        if waiting:  # algo orders not triggered yet: one request for the symbol's, the others looked up
            snapshot = await self._api(ALGO_OPEN, {"symbol": self._market_id(market)})
            open_algos = {str(a.get("clientAlgoId")): a for a in snapshot}
            for rec in waiting:
                info = open_algos.get(rec.venue_coid)
                if info is None or info.get("algoStatus") not in _ALGO_WAITING:
                    await self._refresh(rec)  # triggered (then followed as its order), canceled, rejected
        working = [rec for rec in recs if rec.working and not rec.waiting]
        if working:
            snapshot = await self._api(self.EP.open_orders, {"symbol": self._market_id(market)})
            open_by_coid = {str(o.get("clientOrderId")): o for o in snapshot}
            open_by_id = {str(o.get("orderId")): o for o in snapshot}
            gone, changed = [], market not in self._cursor
            for rec in working:
                # the order an algo order's trigger placed carries an id of Binance's: followed by orderId
                info = open_by_id.get(rec.order_id) if rec.algo else open_by_coid.get(rec.venue_coid)
                if info is None:
                    gone.append(rec)
                elif dec(info.get("executedQty")) != rec.leg_filled or info.get("status") != rec.state:
                    changed = True
                    self._apply(rec, info)
            if changed or gone:
                await self._read_trades(market)
            for rec in gone:
                await self._refresh(rec)  # its final state (filled, canceled, expired) and any trade still missing
        for rec in recs:
            if not rec.working and not rec.pending:
                await self._protect(rec)
                await self._one_cancels_other(rec)

    async def _one_cancels_other(self, rec: _Record) -> None:
        """A futures stop-loss or take-profit that filled cancels its sibling (a spot OCO list does this itself;
        separate futures orders do not, and a reduce-only order left behind would act on a later position)."""
        if not self.FUTURES or rec.parent is None or rec.prior_filled + rec.leg_filled <= 0:
            return
        for kind in ("-sl", "-tp"):
            sibling = self._records.get(rec.parent + kind)
            if sibling is None or sibling is rec or not sibling.working:
                continue
            try:
                await self._cancel_leg(sibling)
                self.log.info("sibling of a filled protective order canceled", client_order_id=sibling.client_order_id)
            except OrderNotFoundError:
                await self._refresh(sibling)

    def _prune(self) -> None:
        """Finished orders reported long ago leave memory (their ids stay known to Binance: a command delivered
        again is resumed, i.e. looked up, before it is placed)."""
        horizon = time.monotonic() - self.reconcile_lookback_s
        for coid, rec in list(self._records.items()):
            if rec.closed_at and rec.closed_at < horizon and self._emitted.get(coid) == rec.view():
                del self._records[coid]
                self._emitted.pop(coid, None)
                self._by_order_id.pop((rec.market, rec.order_id), None)

    async def order_updates(self) -> AsyncIterator[BrokerOrder]:
        while True:
            for view in await self.poll_working():
                yield view
            await asyncio.sleep(self.poll_interval_s)

    # ------------------------------------------------------------------------------------ market data

    async def instruments(self) -> dict[str, InstrumentOverride]:
        """What exchangeInfo says of the configured symbols, for KV ``om_instruments``: tick, lot step and
        bounds, currencies, contract size, minimum notional. The pip size is the strategies' convention (the
        instruments file), not a venue fact, so it is not reported."""
        await self._markets()
        out = {}
        for symbol in self.symbols:
            try:
                market = await self._market(symbol)
            except SymbolNotFoundError:
                self.log.warning("configured symbol not listed by Binance", symbol=symbol)
                continue
            out[symbol] = self._instrument(market)
        return out

    def _instrument(self, market: dict[str, Any]) -> InstrumentOverride:
        filters = {f["filterType"]: f for f in market["info"].get("filters", [])}
        lot, price = filters.get("LOT_SIZE", {}), filters.get("PRICE_FILTER", {})
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        step = dec(lot.get("stepSize")) or None
        return InstrumentOverride(
            kind="crypto_linear", base_currency=market["base"], quote_currency=market["quote"],
            contract_size=dec(market["info"].get("contractSize") or "1"), lot_step=step,
            min_lot=dec(lot.get("minQty")) or None, max_lot=self._floor_to(dec(lot.get("maxQty")), step) or None,
            tick_size=dec(price.get("tickSize")) or None,
            min_notional=dec(notional.get("minNotional") or notional.get("notional")) or None,
            leverage=self._leverage(market),
        )  # fmt: skip

    @staticmethod
    def _floor_to(value: Decimal, step: Decimal | None) -> Decimal:
        return value - value % step if step else value

    def _leverage(self, market: dict[str, Any]) -> Decimal | None:
        return Decimal(1)  # spot: the whole notional is paid

    async def quotes(self) -> AsyncIterator[Quote]:
        """Best bid and ask of the configured symbols every ``quote_interval_s`` (``bookTicker``: one request for
        all of them)."""
        if not self.symbols or self.quote_interval_s <= 0:
            return
        while True:
            try:
                for quote in await self.book_tickers():
                    yield quote
            except BrokerError as exc:
                self.log.debug("quote poll failed", error=exc.message)
            except Exception:
                self._unreadable("quote_poll")
            await asyncio.sleep(self.quote_interval_s)

    async def book_tickers(self) -> list[Quote]:
        wanted = {}
        for symbol in self.symbols:
            with contextlib.suppress(SymbolNotFoundError):
                wanted[(await self._market(symbol))["id"]] = symbol
        if not wanted:
            return []
        rows = await self._api(self.EP.book_ticker, self._ticker_params(sorted(wanted)))
        out = []
        for row in rows if isinstance(rows, list) else [rows]:
            symbol = wanted.get(row.get("symbol"))
            if symbol is None:
                continue
            out.append(Quote(
                broker_id=self.broker_id, symbol=symbol, bid=dec(row["bidPrice"]), ask=dec(row["askPrice"]),
                bid_size=dec(row["bidQty"]), ask_size=dec(row["askQty"]),
            ))  # fmt: skip
        return out

    def _ticker_params(self, ids: list[str]) -> dict[str, Any]:
        # spot takes a JSON array of symbols (weight 4 for several, 2 for one)
        return {"symbol": ids[0]} if len(ids) == 1 else {"symbols": json.dumps(ids, separators=(",", ":"))}


# ------------------------------------------------------------------------------------------ USD-M futures


class BinanceFuturesAdapter(BinanceSpotAdapter):
    """Binance USD-M perpetual futures through ccxt's ``binanceusdm``: reduce-only orders (one-way mode) or
    ``positionSide`` LONG / SHORT (hedge mode), positions from ``positionRisk``, the wallet from ``account``,
    leverage / margin type / position mode from config (applied on connect), modify as an amend
    (``PUT /fapi/v1/order``). Fills come from ``userTrades`` (futures answers carry no fills), commissions in the
    margin asset."""

    MARKET_TYPE = "linear"
    DEFAULT_TYPE = "swap"
    API = "fapi"
    DEFAULT_WEIGHT_LIMIT = 2400
    FUTURES = True
    EP = FUTURES_API
    DUPLICATE = ("-4116", "ClientOrderId is duplicated.")

    def __init__(
        self,
        broker_id: str,
        *,
        leverage: dict[str, int] | None = None,
        margin_type: str | None = None,
        hedge_mode: bool | None = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(broker_id, **kwargs)
        self.leverage = dict(leverage or {})
        self.margin_type = margin_type  # "cross" | "isolated" | None (leave as the account has it)
        self.hedge_mode = hedge_mode  # False = one-way (positionSide BOTH); True = LONG/SHORT; None = as it is
        self.dual_side: bool | None = hedge_mode  # the account's mode, as last set or read
        self.settings_applied = False

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        ex = _UsdmExchange(config)
        ex.local_prefix = self.base_url
        return ex

    def _hedge(self) -> bool:
        return bool(self.dual_side)

    async def connect(self) -> None:
        await super().connect()
        try:
            await self.apply_settings()
        except BrokerConnectionError as exc:
            self.log.warning(
                "futures settings not applied on connect; retried before the next order", error=exc.message
            )

    async def _ready(self) -> None:
        await super()._ready()
        if not self.settings_applied:
            await self.apply_settings()

    async def _unchanged_ok(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                            codes: tuple[str, ...]) -> None:  # fmt: skip
        try:
            await self._call(name, 1, fn, *args)
        except BrokerError as exc:
            if exc.code not in codes:  # -4046 / -4059: "No need to change ..." is not an error
                raise

    async def apply_settings(self) -> None:
        """Position mode, then margin type and leverage per configured symbol."""
        if self.hedge_mode is not None:
            await self._unchanged_ok("POST /fapi/v1/positionSide/dual", self.exchange.set_position_mode,
                                     self.hedge_mode, codes=("-4059",))  # fmt: skip
            self.dual_side = self.hedge_mode
        else:
            answer = await self._call("GET /fapi/v1/positionSide/dual", 30,
                                      self.exchange.fapiPrivateGetPositionSideDual, {})  # fmt: skip
            self.dual_side = bool(answer.get("dualSidePosition"))
        for symbol in sorted(self.leverage):  # margin type and leverage are per symbol: the configured ones
            market = await self._market(symbol)
            if self.margin_type:
                await self._unchanged_ok("POST /fapi/v1/marginType", self.exchange.set_margin_mode,
                                         self.margin_type, market["symbol"], codes=("-4046",))  # fmt: skip
            await self._call("POST /fapi/v1/leverage", 1, self.exchange.set_leverage, self.leverage[symbol],
                             market["symbol"])  # fmt: skip
        self.settings_applied = True

    def _leverage(self, market: dict[str, Any]) -> Decimal | None:
        for symbol, lev in self.leverage.items():
            if symbol in (market["symbol"], market["id"]):
                return Decimal(lev)
        return None  # the instruments file's

    def _ticker_params(self, ids: list[str]) -> dict[str, Any]:
        return {"symbol": ids[0]} if len(ids) == 1 else {}  # futures: one symbol, or all (weight 5)

    async def get_balance(self) -> Balance:
        info = await self._account()
        return Balance(
            currency=self.currency,
            balance=dec(info["totalWalletBalance"]),
            equity=dec(info["totalMarginBalance"]),
            free_margin=dec(info["availableBalance"]),
            margin_used=dec(info["totalInitialMargin"]),
        )

    async def get_positions(self) -> list[BrokerPosition]:
        rows = await self._api(POSITION_RISK)
        await self._markets()
        out = []
        for row in rows:
            amount = dec(row["positionAmt"])
            if amount == 0:
                continue
            side = row.get("positionSide", "BOTH")
            if side == "SHORT" and amount > 0:
                amount = -amount  # hedge mode: Binance reports the SHORT amount negative; never trust the sign alone
            out.append(
                BrokerPosition(
                    symbol=self._market_name(row["symbol"]),
                    quantity=amount,
                    avg_price=dec(row["entryPrice"]),
                    position_id=None if side == "BOTH" else side,
                )
            )
        return out

    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder:
        """An amend of the working limit order (quantity and price; the order keeps its id)."""
        rec = self._record(client_order_id)
        if stop_price is not None or rec.order_type is not OrderType.LIMIT or rec.algo:
            raise ModificationError("only the quantity and price of limit orders can be amended")
        if rec.pending:
            await self._resolve(rec)
        if not rec.working:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        qty = rec.quantity if quantity is None else quantity
        price = rec.limit_price if limit_price is None else limit_price
        assert price is not None
        request = {
            "symbol": self._market_id(rec.market),
            "origClientOrderId": rec.venue_coid,
            "side": rec.side.value,
            "quantity": self.amount_to_precision(rec.market, qty),
            "price": self.price_to_precision(rec.market, price),
        }
        try:
            info = await self._api(AMEND, request)
        except (OrderNotFoundError, OrderError) as exc:
            raise ModificationError(exc.message, code=exc.code) from exc
        rec.quantity, rec.limit_price = dec(info["origQty"]), dec(info["price"])
        self._apply(rec, info)
        await self._complete_fills(rec)
        return rec.view()
