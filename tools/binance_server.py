"""A local Binance-compatible spot REST server for tests, written from Binance's public API documentation
(docs/architecture.md §17 names the pages each behaviour follows, and the guesses where they are silent).

Endpoints (``/api/v3``): ``ping``, ``time``, ``exchangeInfo`` (PRICE_FILTER / LOT_SIZE / NOTIONAL filters,
orderTypes, rateLimits), ``depth``, ``ticker/bookTicker`` (``symbol=``, ``symbols=["A","B"]`` or all), ``order``
(POST / GET / DELETE; LIMIT, MARKET, LIMIT_MAKER, STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT),
``orderList/oco`` (POST), ``orderList`` (DELETE), ``openOrders``, ``account``, ``myTrades`` (orderId / fromId /
startTime / endTime / limit). Signed endpoints check the ``X-MBX-APIKEY`` header, the HMAC-SHA256 ``signature`` over
query string (as sent, percent-encoded) + body, and ``timestamp`` against ``recvWindow``. Balances lock on resting
and waiting stop orders (an OCO locks once for its two legs); orders go NEW -> PARTIALLY_FILLED -> FILLED / CANCELED
/ EXPIRED; FULL responses carry ``fills[]``. Stop orders wait (``isWorking`` false) until the symbol's last price
(default: the mid of the book) reaches their stopPrice; an OCO leg that executes expires the other; canceling one
leg cancels the list. Errors are ``{"code": ..., "msg": ...}`` with the documented codes and messages.

USD-M futures (``/fapi``, :class:`FuturesVenue`): ``v1/ping``, ``v1/time``, ``v1/exchangeInfo``, ``v1/depth``,
``v1/ticker/bookTicker``, ``v2|v3/account``, ``v2|v3/positionRisk``, ``v1/leverage``, ``v1/marginType``,
``v1/positionSide/dual`` (GET / POST: one-way or hedge mode), ``v1/order`` (POST / GET / DELETE / PUT; LIMIT and
MARKET: since 2025-12-09 the conditional types STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET are refused there
with -4120 and go through the Algo Order API), ``v1/algoOrder`` (POST / GET / DELETE; algoType CONDITIONAL with a
triggerPrice and workingType CONTRACT_PRICE or MARK_PRICE), ``v1/openAlgoOrders``, ``v1/openOrders``,
``v1/userTrades``. Hedge mode keeps LONG and SHORT positions per symbol. An algo order waits (algoStatus NEW) with no
margin held and none checked; when its trigger price is reached it either is REJECTED (margin insufficient, or a
reduce-only / closing one that no longer reduces) or places its actual order (TRIGGERED while that order is open,
FINISHED once it is filled, canceled or expired), a regular order with a server-made clientOrderId
``algo-<algoId>`` (not the clientAlgoId) that the algo names in ``actualOrderId``.

Request weight: every route has its documented weight, counted per venue (spot and futures apart) in a window per
UTC minute of the server clock; every answer carries ``X-MBX-USED-WEIGHT-1M`` (the venue's weight in the window
after this request) and a request that would pass the limit (``weight_limit``: 6000 spot, 2400 futures) is
answered 429 / -1003 with ``Retry-After`` (seconds to the next window), nothing processed.

Test hooks: :meth:`BinanceServer.fill` (a maker fill of a resting order, e.g. a partial fill),
:meth:`BinanceServer.fail_next` (the next request to a path answers an error), :meth:`BinanceServer.hold_next`
(the next request to a path is processed, then its answer held back: a client timeout with the order placed),
:meth:`BinanceServer.drop_next` (never processed, answer held), :meth:`BinanceServer.rate_limit_next` (429 with
Retry-After, nothing processed), :meth:`BinanceServer.garble_next` (processed, answered 200 with a given raw
body), :meth:`BinanceServer.set_used_weight` ``(n, futures=False)`` (the current window's count),
:meth:`BinanceServer.set_last_price` ``(symbol, price)`` (triggers waiting spot stops),
:meth:`FuturesVenue.set_last_price` / :meth:`FuturesVenue.set_mark_price` ``(symbol, price)`` (trigger the NEW
algo orders by workingType; they return the actual orders placed), :meth:`FuturesVenue.fill`,
:meth:`FuturesVenue.algo` ``(client_algo_id)``, :meth:`BinanceServer.lag_trades` ``(polls, seconds)`` (new trades
listed by myTrades / userTrades only after that many reads / that long; the order's own answers are not late),
:meth:`BinanceServer.revoke_key` ``(from_ms)`` / :meth:`BinanceServer.restore_key` (signed requests answer -2015
from that server time on), :meth:`BinanceServer.skew_clock` ``(offset_ms)`` (the server clock against ours).
``sent`` records every request's parameters (less the signature). Attributes: ``weight_limit`` (both venues),
``weight`` (the ``X-MBX-USED-WEIGHT-1M`` of the last answer), ``clock_offset_ms`` / ``frozen_ms`` (the server
clock: :meth:`BinanceServer.now_ms`), ``last_prices``, ``order_lists``, ``futures.hedge_positions``,
``futures.algos`` (algoId -> :class:`AlgoOrder`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

D = Decimal
ZERO = D(0)
PREFIX = "/api/v3"
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

STOP_KINDS = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")  # spot, waiting for a trigger
SPOT_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", *STOP_KINDS)
OCO_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
FUTURES_STOPS = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")  # conditional: Algo Order API only
FUTURES_TYPES = ("LIMIT", "MARKET", *FUTURES_STOPS)  # exchangeInfo's orderTypes still lists the conditional ones
WORKING_TYPES = ("CONTRACT_PRICE", "MARK_PRICE")
ALGO_STATUSES = ("NEW", "CANCELED", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED")
ALGO_ONLY = "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
CLIENT_ALGO_ID = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
# errors.md, "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 CANCEL_REJECTED"
STOP_IMMEDIATE = "Order would trigger immediately."

SPOT_WEIGHTS = {("GET", "exchangeInfo"): 20, ("GET", "account"): 20, ("GET", "order"): 4}
FUTURES_WEIGHTS = {"v2/account": 5, "v3/account": 5, "v2/positionRisk": 5, "v3/positionRisk": 5, "v1/userTrades": 5}


def s8(value: Decimal) -> str:
    """Binance writes amounts as strings with 8 decimals."""
    return f"{value:.8f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> ApiError:
    return ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


def triggers(kind: str, side: str, stop: Decimal, price: Decimal) -> bool:
    """Whether a stop order of ``kind`` (spot STOP_LOSS* / TAKE_PROFIT*, futures STOP* / TAKE_PROFIT*) triggers at
    ``price``: stop-losses buy when the price rises to the stop and sell when it falls to it, take-profits the
    other way round."""
    if kind.startswith("STOP"):
        return price >= stop if side == "BUY" else price <= stop
    return price <= stop if side == "BUY" else price >= stop


def _int_or(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw not in (None, "") else default  # type: ignore[arg-type]
    except ValueError:
        return default


def request_weight(method: str, name: str, params: dict[str, str]) -> int:
    """The documented request weight of one request (``name``: ``"order"`` or ``"fapi/v1/order"``)."""
    symbol = params.get("symbol")
    if name.startswith("fapi/"):
        path = name[len("fapi/") :]
        if path == "v1/depth":
            limit = _int_or(params.get("limit"), 500)
            return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
        if path in ("v1/openOrders", "v1/openAlgoOrders"):
            return 1 if symbol else 40
        if path == "v1/algoOrder":
            return 0 if method == "POST" else 1  # placing an algo order: 0 IP weight, as documented
        if path == "v1/ticker/bookTicker":
            return 2 if symbol else 5
        if path == "v1/positionSide/dual":
            return 30 if method == "GET" else 1
        return FUTURES_WEIGHTS.get(path, 1)
    if name == "depth":
        limit = _int_or(params.get("limit"), 100)
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if name == "openOrders":
        return 6 if symbol else 80
    if name == "myTrades":
        return 5 if params.get("orderId") else 20
    if name == "ticker/bookTicker":
        return 2 if symbol else 4
    return SPOT_WEIGHTS.get((method, name), 1)


@dataclass
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    order_types: tuple[str, ...] = SPOT_TYPES  # the types this server implements

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "status": "TRADING", "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": list(self.order_types), "icebergAllowed": True,
            "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s8(self.min_price), "maxPrice": s8(self.max_price),
                 "tickSize": s8(self.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": s8(self.min_qty), "maxQty": s8(self.max_qty),
                 "stepSize": s8(self.step_size)},
                {"filterType": "NOTIONAL", "minNotional": s8(self.min_notional), "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }  # fmt: skip


@dataclass
class Trade:
    id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    is_buyer: bool
    is_maker: bool
    time_ms: int
    order_list_id: int = -1

    def fill(self) -> dict[str, Any]:
        return {
            "price": s8(self.price), "qty": s8(self.qty), "commission": s8(self.commission),
            "commissionAsset": self.commission_asset, "tradeId": self.id,
        }  # fmt: skip

    def my_trade(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": self.order_list_id,
            "price": s8(self.price), "qty": s8(self.qty), "quoteQty": s8(self.price * self.qty),
            "commission": s8(self.commission), "commissionAsset": self.commission_asset, "time": self.time_ms,
            "isBuyer": self.is_buyer, "isMaker": self.is_maker, "isBestMatch": True,
        }  # fmt: skip


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    price: Decimal
    orig_qty: Decimal
    time_ms: int
    status: str = "NEW"
    executed: Decimal = ZERO
    quote_qty: Decimal = ZERO
    locked: Decimal = ZERO  # funds still locked for the open remainder (quote for buys, base for sells)
    trades: list[Trade] = field(default_factory=list)
    stop_price: Decimal = ZERO
    working: bool = True  # False: a stop order waiting for its trigger
    working_time: int = -1
    update_time: int = 0
    order_list_id: int = -1
    orig_type: str = ""  # futures: the type as placed (``type`` becomes MARKET / LIMIT when a stop triggers)
    working_type: str = "CONTRACT_PRICE"  # futures
    position_side: str = "BOTH"  # futures

    def __post_init__(self) -> None:
        self.orig_type = self.orig_type or self.type
        self.update_time = self.update_time or self.time_ms
        if self.working and self.working_time < 0:
            self.working_time = self.time_ms

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def view(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": self.order_list_id,
            "clientOrderId": self.client_order_id, "price": s8(self.price), "origQty": s8(self.orig_qty),
            "executedQty": s8(self.executed), "cummulativeQuoteQty": s8(self.quote_qty), "status": self.status,
            "timeInForce": self.time_in_force or "GTC", "type": self.type, "side": self.side,
            "stopPrice": s8(self.stop_price), "icebergQty": s8(ZERO), "time": self.time_ms,
            "updateTime": self.update_time, "isWorking": self.working,
            "workingTime": self.working_time if self.working else -1, "origQuoteOrderQty": s8(ZERO),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }  # fmt: skip

    def full(self, fills: list[Trade] | None) -> dict[str, Any]:
        """The order in a POST answer: RESULT (``fills`` None) or FULL (New order (TRADE))."""
        out = self.view()
        out["transactTime"] = self.update_time
        for key in ("time", "updateTime", "isWorking", "icebergQty"):  # icebergQty: only when one was sent
            out.pop(key)
        if self.type not in STOP_KINDS:
            out.pop("stopPrice")  # a conditional field: stop orders only
        if fills is not None:
            out["fills"] = [t.fill() for t in fills]
        return out

    def canceled(self, cancel_id: str, now: int) -> dict[str, Any]:
        """The order in a DELETE answer (Cancel order, Cancel Order list): the RESULT fields less ``workingTime``,
        with ``origClientOrderId`` (the order's) and ``clientOrderId`` (the cancel's)."""
        out = self.full(None)
        out.pop("workingTime")
        out["origClientOrderId"] = self.client_order_id
        out["clientOrderId"] = cancel_id
        out["transactTime"] = now
        return out

    def ack(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "orderId": self.order_id, "orderListId": self.order_list_id,
                "clientOrderId": self.client_order_id, "transactTime": self.update_time}  # fmt: skip


@dataclass
class OrderList:
    """A spot OCO: two legs (below first, then above), one lock for both until a leg executes."""

    order_list_id: int
    list_client_order_id: str
    symbol: str
    side: str
    order_ids: list[int]
    locked: Decimal  # the pair's lock (quote for buys, base for sells) until a leg executes and takes it
    time_ms: int
    status_type: str = "EXEC_STARTED"  # listStatusType: RESPONSE / EXEC_STARTED / ALL_DONE
    status: str = "EXECUTING"  # listOrderStatus: EXECUTING / ALL_DONE / REJECT


@dataclass
class Fault:
    status: int
    code: int
    msg: str
    headers: dict[str, str] = field(default_factory=dict)


class BinanceServer:
    """The venue state plus an aiohttp app serving it on ``127.0.0.1`` (port chosen by the OS)."""

    def __init__(self, api_key: str = "test-api-key", api_secret: str = "test-api-secret") -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.symbols: dict[str, SymbolSpec] = {"BTCUSDT": SymbolSpec("BTCUSDT", "BTC", "USDT")}
        # price-time book per symbol: (price, qty) levels, best first; market orders walk it
        self.bids: dict[str, list[tuple[Decimal, Decimal]]] = {
            "BTCUSDT": [(D("49999.00"), D("0.5")), (D("49998.00"), D("1")), (D("49990.00"), D("5"))]
        }
        self.asks: dict[str, list[tuple[Decimal, Decimal]]] = {
            "BTCUSDT": [(D("50001.00"), D("0.3")), (D("50002.00"), D("1")), (D("50010.00"), D("5"))]
        }
        self.last_prices: dict[str, Decimal] = {}  # set_last_price; unset: the mid of the book
        self.balances: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])  # asset -> [free, locked]
        self.balances["USDT"] = [D("100000"), ZERO]
        self.balances["BTC"] = [D("1"), ZERO]
        self.commission_rate = D("0.001")
        self.orders: dict[int, Order] = {}
        self.order_lists: dict[int, OrderList] = {}
        self.trades: list[Trade] = []
        self._next_order = 1000
        self._next_trade = 5000
        self._next_list = 0
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.holds: dict[str, list[float]] = defaultdict(list)
        self.released = asyncio.Event()
        self.held = asyncio.Event()  # set when a held answer starts waiting
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.weight_limit = 6000  # REQUEST_WEIGHT per minute (spot); futures: self.futures.weight_limit
        self._windows: dict[str, list[int]] = {"spot": [-1, 0], "futures": [-1, 0]}  # venue -> [minute, used]
        self._last_weight = 0
        self.futures = FuturesVenue(self)
        self.clock_offset_ms = 0  # the server's clock against ours (recvWindow checks)
        self.frozen_ms: int | None = None  # when set, the server clock stands still at this time
        self.drops: dict[str, int] = defaultdict(int)
        self.garbles: dict[str, list[str]] = defaultdict(list)
        self.key_revoked_from_ms: int | None = None  # revoke_key: -2015 from this server time on
        self.trade_lag_polls = 0  # lag_trades: reads of the trade list a new trade stays unlisted for
        self.trade_lag_ms = 0  # lag_trades: server time a new trade stays unlisted for
        self._unlisted: dict[tuple[str, int], list[int]] = {}  # (venue, trade id) -> [reads left, listed from ms]
        self.sent: list[tuple[str, str, dict[str, str]]] = []  # (method, name, parameters less the signature)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", PREFIX + "/{name:.*}", self._handle)
        app.router.add_route("*", "/fapi/{name:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)  # its lines would carry signatures
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def now_ms(self) -> int:
        """The server clock: ours plus ``clock_offset_ms``, or ``frozen_ms`` when set."""
        if self.frozen_ms is not None:
            return self.frozen_ms
        return int(time.time() * 1000) + self.clock_offset_ms

    # ------------------------------------------------------------------------------------ test hooks

    def fail_next(self, path: str, code: int, msg: str, status: int = 400) -> None:
        """The next request to ``path`` (e.g. ``"order"``) answers this error without being processed."""
        self.faults[path].append(Fault(status, code, msg))

    def rate_limit_next(self, path: str, retry_after_s: int = 1, count: int = 1) -> None:
        msg = "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute."
        for _ in range(count):
            self.faults[path].append(Fault(429, -1003, msg, {"Retry-After": str(retry_after_s)}))

    def hold_next(self, path: str, max_s: float = 30.0) -> None:
        """Process the next request to ``path``, then hold its answer until :meth:`release` (or ``max_s``)."""
        self.released.clear()
        self.holds[path].append(max_s)

    def drop_next(self, path: str, max_s: float = 30.0) -> None:
        """The next request to ``path`` is never processed and its answer held: a timeout with nothing done."""
        self.drops[path] += 1
        self.hold_next(path, max_s)

    def release(self) -> None:
        self.released.set()

    def revoke_key(self, from_ms: int | None = None) -> None:
        """Signed requests answer -2015 from server time ``from_ms`` (default: now) until :meth:`restore_key`: a
        key revoked, or its IP or permissions changed, while a client uses it."""
        self.key_revoked_from_ms = self.now_ms() if from_ms is None else from_ms

    def restore_key(self) -> None:
        self.key_revoked_from_ms = None

    def skew_clock(self, offset_ms: int) -> None:
        """The server clock runs ``offset_ms`` ahead of ours (negative: behind): ``time`` answers and the
        timestamp checks of signed requests follow it."""
        self.clock_offset_ms = offset_ms

    def lag_trades(self, polls: int = 0, seconds: float = 0.0) -> None:
        """Trades made from now on (either venue) are listed by ``myTrades`` / ``userTrades`` only after ``polls``
        more reads of that venue's trade list and ``seconds`` of server time; the order's own answers (status,
        executedQty, FULL fills) are not late. No arguments: new trades are listed at once."""
        self.trade_lag_polls, self.trade_lag_ms = polls, int(seconds * 1000)

    def _unlist(self, venue: str, trade_id: int, time_ms: int) -> None:
        if self.trade_lag_polls or self.trade_lag_ms:
            self._unlisted[(venue, trade_id)] = [self.trade_lag_polls, time_ms + self.trade_lag_ms]

    def _unlisted_ids(self, venue: str) -> set[int]:
        """One read of the venue's trade list: the ids it must not list yet (each such trade counts the read)."""
        now = self.now_ms()
        hidden = set()
        for (v, tid), entry in list(self._unlisted.items()):
            if v != venue:
                continue
            if entry[0] > 0 or now < entry[1]:
                hidden.add(tid)
                entry[0] = max(0, entry[0] - 1)
            else:
                del self._unlisted[(v, tid)]
        return hidden

    def garble_next(self, path: str, body: str) -> None:
        """Process the next request to ``path``, then answer 200 with ``body`` (raw text: a field missing, a wrong
        shape, not JSON) instead of the real answer: what a client must survive."""
        self.garbles[path].append(body)

    def fill(self, order_id: int, qty: Decimal, price: Decimal | None = None) -> Trade:
        """A maker fill of resting order ``order_id`` (at its limit price unless given): a partial fill when
        ``qty`` is less than what is left. A fill of an OCO leg expires the other leg."""
        order = self.orders[order_id]
        assert order.open and qty <= order.orig_qty - order.executed
        if order.order_list_id != -1:
            self._leg_executes(order)
        return self._execute(order, price if price is not None else order.price, qty, maker=True)

    def set_used_weight(self, n: int, futures: bool = False) -> None:
        """The request weight used in the current minute window of the venue (spot, or futures)."""
        window = self._window("futures" if futures else "spot")
        window[1] = n

    def used_weight(self, futures: bool = False) -> int:
        """The request weight used in the current minute window of the venue."""
        return self._window("futures" if futures else "spot")[1]

    @property
    def weight(self) -> int:
        """The ``X-MBX-USED-WEIGHT-1M`` of the last answer (either venue)."""
        return self._last_weight

    @weight.setter
    def weight(self, n: int) -> None:
        self.set_used_weight(n)
        self._last_weight = n

    def set_last_price(self, symbol: str, price: Decimal | str) -> list[Order]:
        """The symbol's last traded price; the waiting stop orders it reaches trigger (market kinds take from the
        book, limit kinds become working limit orders). Returns the triggered orders."""
        self.last_prices[symbol] = D(str(price))
        out = []
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if order.symbol != symbol or not order.open or order.working:
                continue
            if triggers(order.type, order.side, order.stop_price, self.last_prices[symbol]):
                self._trigger(order)
                out.append(order)
        return out

    def last_price(self, symbol: str) -> Decimal:
        if symbol in self.last_prices:
            return self.last_prices[symbol]
        return _mid(self.bids.get(symbol, []), self.asks.get(symbol, []))

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.open]

    def count_requests(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    # ------------------------------------------------------------------------------------ plumbing

    def _window(self, venue: str) -> list[int]:
        window = self._windows[venue]
        minute = self.now_ms() // MINUTE_MS
        if window[0] != minute:
            window[0], window[1] = minute, 0
        return window

    def _limit(self, venue: str) -> int:
        return self.futures.weight_limit if venue == "futures" else self.weight_limit

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        venue = "spot"
        if request.path.startswith("/fapi/"):
            name, venue = "fapi/" + name, "futures"  # e.g. "fapi/v1/order"
        self.requests.append((request.method, name))
        body = await request.text()
        params = dict(parse_qsl(body, keep_blank_values=True)) if body else {}
        query = request.rel_url.raw_query_string  # as sent: percent-encoded, as it was signed
        params.update(parse_qsl(query, keep_blank_values=True))  # the query string wins
        self.sent.append((request.method, name, {k: v for k, v in params.items() if k != "signature"}))
        window = self._window(venue)
        fault = self.faults[name].pop(0) if self.faults.get(name) else None
        if fault is not None and fault.status == 429:  # nothing processed, nothing counted
            return self._answer({"code": fault.code, "msg": fault.msg}, fault.status, window[1], fault.headers)
        weight = request_weight(request.method, name, params)
        if fault is None and window[1] + weight > self._limit(venue):
            limit = self._limit(venue)
            msg = (
                f"Too many requests; current limit is {limit} requests per minute. Please use the websocket for "
                "live updates to avoid polling the API."
                if venue == "futures"
                else f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. Please "
                "use WebSocket Streams for live updates to avoid polling the API."
            )
            wait_ms = MINUTE_MS - self.now_ms() % MINUTE_MS
            retry = {"Retry-After": str(-(-wait_ms // 1000))}  # whole seconds to the next window
            return self._answer({"code": -1003, "msg": msg}, 429, window[1], retry)
        window[1] += weight
        used = window[1]
        if fault is not None:
            return self._answer({"code": fault.code, "msg": fault.msg}, fault.status, used, fault.headers)
        if self.drops.get(name):
            self.drops[name] -= 1
            max_s = self.holds[name].pop(0)
            self.held.set()
            try:
                await asyncio.wait_for(self.released.wait(), max_s)
            except TimeoutError:
                pass
            return self._answer(
                {
                    "code": -1007,
                    "msg": "Timeout waiting for response from backend server. "
                    "Send status unknown; execution status unknown.",
                },
                408,
                used,
            )
        try:
            route = ROUTES.get((request.method, name))
            froute = FUTURES_ROUTES.get((request.method, name))
            if route is None and froute is None:
                raise ApiError(404, -1000, "An unknown error occurred while processing the request.")
            handler, signed = route or froute  # type: ignore[misc]
            if signed:
                self._check_signed(request, params, body)
            result = handler(self, params) if route else handler(self.futures, params)
        except ApiError as exc:
            return self._answer({"code": exc.code, "msg": exc.msg}, exc.status, used)
        if self.holds.get(name):
            max_s = self.holds[name].pop(0)
            self.held.set()
            try:
                await asyncio.wait_for(self.released.wait(), max_s)
            except TimeoutError:
                pass
        if self.garbles.get(name):
            self._last_weight = used
            return web.Response(text=self.garbles[name].pop(0), status=200, content_type="application/json",
                                headers={"X-MBX-USED-WEIGHT-1M": str(used)})  # fmt: skip
        return self._answer(result, 200, used)

    def _answer(self, body: Any, status: int, used: int, headers: dict[str, str] | None = None) -> web.Response:
        self._last_weight = used
        return web.json_response(body, status=status, headers={"X-MBX-USED-WEIGHT-1M": str(used), **(headers or {})})

    def _check_signed(self, request: web.Request, params: dict[str, str], body: str) -> None:
        revoked = self.key_revoked_from_ms is not None and self.now_ms() >= self.key_revoked_from_ms
        if request.headers.get("X-MBX-APIKEY") != self.api_key or revoked:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        # Binance: totalParams = the query string (as sent, percent-encoded) concatenated with the body
        total = request.rel_url.raw_query_string + body
        marker = "&signature="
        cut = total.rfind(marker)
        if cut < 0 or "signature" not in params:
            raise mandatory("signature")
        payload, signature = total[:cut], total[cut + len(marker) :]
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise mandatory("timestamp") from None
        if window > 60000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self.now_ms()  # the timing rule of "Timing security" (General API Information)
        if ts >= now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        spec = self.symbols.get(params.get("symbol", ""))
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    @staticmethod
    def _decimal(params: dict[str, str], key: str) -> Decimal | None:
        raw = params.get(key)
        if raw is None or raw == "":
            return None
        try:
            return D(raw)
        except ArithmeticError:
            raise ApiError(
                400,
                -1100,
                f"Illegal characters found in parameter '{key}'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            ) from None

    @staticmethod
    def _int(params: dict[str, str], key: str) -> int | None:
        raw = params.get(key)
        if raw is None or raw == "":
            return None
        if not raw.isdigit():
            raise ApiError(
                400, -1100, f"Illegal characters found in parameter '{key}'; legal range is '^[0-9]{{1,20}}$'."
            )
        return int(raw)

    def _find(self, params: dict[str, str]) -> Order:
        spec = self._spec(params)
        oid, coid = params.get("orderId"), params.get("origClientOrderId")
        if oid is None and coid is None:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        for order in sorted(self.orders.values(), key=lambda o: -o.order_id):  # the latest with that id
            if order.symbol != spec.symbol:
                continue
            if (oid is not None and str(order.order_id) == oid) or (oid is None and order.client_order_id == coid):
                return order
        raise ApiError(400, -2013, "Order does not exist.")

    # ------------------------------------------------------------------------------------ matching

    def _execute(self, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> Trade:
        spec = self.symbols[order.symbol]
        base, quote = self.balances[spec.base], self.balances[spec.quote]
        notional = price * qty
        if order.side == "BUY":
            commission, asset = (qty * self.commission_rate).quantize(D("1e-8")), spec.base
            if order.locked:
                release = min(order.locked, order.price * qty)
                order.locked -= release
                quote[1] -= release
                quote[0] += release - notional
            else:
                quote[0] -= notional
            base[0] += qty - commission
        else:
            commission, asset = (notional * self.commission_rate).quantize(D("1e-8")), spec.quote
            if order.locked:
                order.locked -= qty
                base[1] -= qty
            else:
                base[0] -= qty
            quote[0] += notional - commission
        self._next_trade += 1
        now = self.now_ms()
        trade = Trade(
            self._next_trade, order.order_id, order.symbol, price, qty, commission, asset, order.side == "BUY", maker,
            now, order.order_list_id,
        )  # fmt: skip
        order.executed += qty
        order.quote_qty += notional
        order.update_time = now
        order.trades.append(trade)
        self.trades.append(trade)
        self._unlist("spot", trade.id, now)
        order.status = "FILLED" if order.executed == order.orig_qty else "PARTIALLY_FILLED"
        if order.status == "FILLED" and order.locked and order.side == "BUY":
            quote[1] -= order.locked  # price improvement: give back what is still locked
            quote[0] += order.locked
            order.locked = ZERO
        return trade

    def _release(self, order: Order) -> None:
        """Give back what the order still locks."""
        if order.locked:
            spec = self.symbols[order.symbol]
            balance = self.balances[spec.quote if order.side == "BUY" else spec.base]
            balance[1] -= order.locked
            balance[0] += order.locked
            order.locked = ZERO

    def _lock(self, spec: SymbolSpec, side: str, amount: Decimal) -> None:
        balance = self.balances[spec.quote if side == "BUY" else spec.base]
        if amount > balance[0]:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        balance[0] -= amount
        balance[1] += amount

    def _crossing(self, spec: SymbolSpec, side: str, limit: Decimal | None, qty: Decimal) -> list[list[Decimal]]:
        """The (price, qty) the order can take from the book, best first (the book is left as it is)."""
        levels = self.asks[spec.symbol] if side == "BUY" else self.bids[spec.symbol]
        out, left = [], qty
        for price, size in levels:
            if left <= 0:
                break
            if limit is not None and (price > limit if side == "BUY" else price < limit):
                break
            take = min(size, left)
            out.append([price, take])
            left -= take
        return out

    def _check_price(self, spec: SymbolSpec, price: Decimal) -> None:
        if price < spec.min_price or price > spec.max_price or price % spec.tick_size != 0:
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")

    def _check_filters(self, spec: SymbolSpec, price: Decimal | None, qty: Decimal, ref: Decimal) -> None:
        if price is not None:
            self._check_price(spec, price)
        if qty < spec.min_qty or qty > spec.max_qty or qty % spec.step_size != 0:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if (price if price is not None else ref) * qty < spec.min_notional:
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")

    def _check_new_id(self, symbol: str, coid: str) -> None:
        if any(o.client_order_id == coid and o.symbol == symbol and o.open for o in self.orders.values()):
            raise ApiError(400, -2010, "Duplicate order sent.")

    def _trigger(self, order: Order) -> None:
        """A waiting stop order reached its stop price: a market kind takes from the book (what the book cannot
        fill expires), a limit kind becomes a working limit order (fills what crosses, rests unless IOC / FOK)."""
        if order.order_list_id != -1:
            self._leg_executes(order)
        now = self.now_ms()
        order.working, order.working_time, order.update_time = True, now, now
        spec = self.symbols[order.symbol]
        left = order.orig_qty - order.executed
        if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
            self._release(order)  # a market order pays from the free balance
            takes = self._crossing(spec, order.side, None, left)
            cost = sum((p * q for p, q in takes), ZERO)
            if order.side == "BUY" and cost > self.balances[spec.quote][0]:
                takes = []
        else:
            takes = self._crossing(spec, order.side, order.price, left)
            if order.time_in_force == "FOK" and sum((q for _, q in takes), ZERO) < left:
                takes = []
        for p, q in takes:
            self._execute(order, p, q, maker=False)
            self._consume(spec.symbol, order.side, p, q)
        if order.executed < order.orig_qty and (order.type in ("STOP_LOSS", "TAKE_PROFIT") or
                                                order.time_in_force != "GTC"):  # fmt: skip
            self._release(order)
            order.status = "EXPIRED"

    def _leg_executes(self, order: Order) -> None:
        """A leg of an OCO fills or triggers: it takes the list's lock, the other leg expires."""
        lst = self.order_lists[order.order_list_id]
        if lst.locked:
            order.locked += lst.locked
            lst.locked = ZERO
        now = self.now_ms()
        for oid in lst.order_ids:
            other = self.orders[oid]
            if other is not order and other.open:
                self._release(other)
                other.status, other.update_time = "EXPIRED", now
        lst.status_type = lst.status = "ALL_DONE"

    def _consume(self, symbol: str, side: str, price: Decimal, qty: Decimal) -> None:
        book = self.asks[symbol] if side == "BUY" else self.bids[symbol]
        for i, (p, size) in enumerate(book):
            if p == price:
                if size > qty:
                    book[i] = (p, size - qty)
                else:
                    book.pop(i)
                return

    # ------------------------------------------------------------------------------------ endpoints

    def ping(self, params: dict[str, str]) -> Any:
        return {}

    def server_time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.now_ms()}

    def exchange_info(self, params: dict[str, str]) -> Any:
        return {
            "timezone": "UTC", "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [], "symbols": [spec.info() for spec in self.symbols.values()],
        }  # fmt: skip

    def depth(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        limit = int(params.get("limit", "100"))
        return {
            "lastUpdateId": 1027024,
            "bids": [[s8(p), s8(q)] for p, q in self.bids[spec.symbol][:limit]],
            "asks": [[s8(p), s8(q)] for p, q in self.asks[spec.symbol][:limit]],
        }

    def _book_ticker_row(self, symbol: str) -> dict[str, Any]:
        bids, asks = self.bids.get(symbol, []), self.asks.get(symbol, [])
        bid, bid_qty = bids[0] if bids else (ZERO, ZERO)
        ask, ask_qty = asks[0] if asks else (ZERO, ZERO)
        return {"symbol": symbol, "bidPrice": s8(bid), "bidQty": s8(bid_qty), "askPrice": s8(ask),
                "askQty": s8(ask_qty)}  # fmt: skip

    def book_ticker(self, params: dict[str, str]) -> Any:
        if "symbol" in params and "symbols" in params:
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        if "symbol" in params:
            return self._book_ticker_row(self._spec(params).symbol)
        if "symbols" not in params:
            return [self._book_ticker_row(symbol) for symbol in self.symbols]
        try:
            names = json.loads(params["symbols"])
        except ValueError:
            names = None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'symbols'; legal range is "
                '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
            )  # fmt: skip
        if len(set(names)) < len(names):
            raise ApiError(400, -1151, "Symbol is present multiple times in the list.")
        for name in names:
            self._spec({"symbol": name})
        return [self._book_ticker_row(name) for name in names]

    def account(self, params: dict[str, str]) -> Any:
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
            "accountType": "SPOT", "permissions": ["SPOT"], "uid": 354937868,
            "balances": [
                {"asset": asset, "free": s8(free), "locked": s8(locked)}
                for asset, (free, locked) in sorted(self.balances.items())
            ],
        }  # fmt: skip

    def new_order(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        side, kind = params.get("side"), params.get("type")
        if side not in ("BUY", "SELL"):
            raise mandatory("side")
        if kind not in spec.order_types:
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = self._decimal(params, "quantity")
        if qty is None:
            raise mandatory("quantity")
        price = self._decimal(params, "price")
        stop = self._decimal(params, "stopPrice")
        tif = params.get("timeInForce")
        if kind in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and price is None:
            raise mandatory("price")
        if kind in ("MARKET", "STOP_LOSS", "TAKE_PROFIT") and price is not None:
            raise not_required("price")
        if kind in STOP_KINDS and stop is None:
            raise mandatory("stopPrice")
        if kind not in STOP_KINDS and stop is not None:
            raise not_required("stopPrice")
        if kind in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            if tif not in ("GTC", "IOC", "FOK"):
                raise mandatory("timeInForce")
        else:
            tif = None
        coid = params.get("newClientOrderId") or f"x-{self._next_order + 1}"
        self._check_new_id(spec.symbol, coid)
        book = self.asks[spec.symbol] if side == "BUY" else self.bids[spec.symbol]
        ref = book[0][0] if book else (price or ZERO)
        self._check_filters(spec, price, qty, stop if stop is not None else ref)
        default_resp = "FULL" if kind in ("LIMIT", "MARKET") else "ACK"
        if kind in STOP_KINDS:
            assert stop is not None
            self._check_price(spec, stop)
            if triggers(kind, side, stop, self.last_price(spec.symbol)):
                raise ApiError(400, -2010, STOP_IMMEDIATE)
            lock = qty if side == "SELL" else qty * (price if price is not None else stop)
            self._lock(spec, side, lock)
            self._next_order += 1
            order = Order(self._next_order, coid, spec.symbol, side, kind, tif, price or ZERO, qty, self.now_ms(),
                          locked=lock, stop_price=stop, working=False)  # fmt: skip
            self.orders[order.order_id] = order
            return self._order_answer(order, [], params.get("newOrderRespType", default_resp))
        takes = self._crossing(spec, side, price, qty)
        if kind == "LIMIT_MAKER" and takes:
            raise ApiError(400, -2010, "Order would immediately match and take.")
        taken = sum((q for _, q in takes), ZERO)
        if tif == "FOK" and taken < qty:
            takes, taken = [], ZERO
        rests = kind == "LIMIT_MAKER" or (kind == "LIMIT" and tif == "GTC" and taken < qty)
        # funds: what the immediate fills cost plus what a resting remainder locks
        if side == "BUY":
            need = sum((p * q for p, q in takes), ZERO) + ((qty - taken) * price if rests and price else ZERO)
            have = self.balances[spec.quote][0]
        else:
            need = qty if rests else taken
            have = self.balances[spec.base][0]
        if need > have:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        self._next_order += 1
        order = Order(self._next_order, coid, spec.symbol, side, kind, tif, price or ZERO, qty, self.now_ms())
        self.orders[order.order_id] = order
        fills = []
        for p, q in takes:
            fills.append(self._execute(order, p, q, maker=False))
            self._consume(spec.symbol, side, p, q)
        if rests:
            left = qty - order.executed
            order.locked = left * price if side == "BUY" and price is not None else left
            self._lock(spec, side, order.locked)
        elif order.executed < qty:
            order.status = "EXPIRED"  # IOC / FOK remainder, or a market order the book could not fill
        return self._order_answer(order, fills, params.get("newOrderRespType", default_resp))

    @staticmethod
    def _order_answer(order: Order, fills: list[Trade], resp: str) -> dict[str, Any]:
        if resp == "ACK":
            return order.ack()
        return order.full(fills if resp == "FULL" else None)

    def get_order(self, params: dict[str, str]) -> Any:
        return self._find(params).view()

    def cancel_order(self, params: dict[str, str]) -> Any:
        try:
            order = self._find(params)
        except ApiError:
            raise ApiError(400, -2011, "Unknown order sent.") from None
        if not order.open:
            raise ApiError(400, -2011, "Unknown order sent.")
        if order.order_list_id != -1:  # canceling one leg cancels the whole list
            return self._cancel_list(self.order_lists[order.order_list_id])
        self._release(order)
        order.status, order.update_time = "CANCELED", self.now_ms()
        return order.canceled(params.get("newClientOrderId") or f"cancel-{order.order_id}", order.update_time)

    def get_open_orders(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol")
        if symbol is not None:
            self._spec(params)
        return [o.view() for o in self.orders.values() if o.open and (symbol is None or o.symbol == symbol)]

    def my_trades(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        oid, from_id = self._int(params, "orderId"), self._int(params, "fromId")
        start, end = self._int(params, "startTime"), self._int(params, "endTime")
        sent = frozenset(k for k, v in (("orderId", oid), ("fromId", from_id), ("startTime", start),
                                        ("endTime", end)) if v is not None)  # fmt: skip
        allowed = ({"orderId"}, {"startTime"}, {"endTime"}, {"fromId"}, {"startTime", "endTime"}, {"orderId", "fromId"})
        if sent and sent not in {frozenset(a) for a in allowed}:
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > DAY_MS:
            raise ApiError(400, -1127, "More than 24 hours between startTime and endTime.")
        limit = min(self._int(params, "limit") or 500, 1000)
        unlisted = self._unlisted_ids("spot")
        rows = sorted(
            (
                t
                for t in self.trades
                if t.symbol == spec.symbol
                and t.id not in unlisted
                and (oid is None or t.order_id == oid)
                and (from_id is None or t.id >= from_id)
                and (start is None or t.time_ms >= start)
                and (end is None or t.time_ms <= end)
            ),
            key=lambda t: t.id,
        )
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]  # else the most recent
        return [t.my_trade() for t in rows]

    # ------------------------------------------------------------------------------------ order lists (OCO)

    def new_oco(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise mandatory("side")
        qty = self._decimal(params, "quantity")
        if qty is None:
            raise mandatory("quantity")
        kinds = {}
        for leg in ("above", "below"):
            kind = params.get(f"{leg}Type")
            if not kind:
                raise mandatory(f"{leg}Type")
            if kind not in OCO_TYPES:
                raise ApiError(400, -1158, "Order type not supported in OCO.")
            kinds[leg] = kind
        above, below = kinds["above"], kinds["below"]
        if above == below == "LIMIT_MAKER":
            raise ApiError(400, -1168, "At least one OCO order must be contingent.")
        if side == "SELL":
            if below == "LIMIT_MAKER":
                raise ApiError(400, -1166, "A limit order in a sell OCO must be above.")
            if above.startswith("STOP_LOSS"):
                raise ApiError(400, -1197, "A stop loss order in a sell OCO must be below.")
            if below.startswith("TAKE_PROFIT"):
                raise ApiError(400, -1199, "A take profit order in a sell OCO must be above.")
        else:
            if above == "LIMIT_MAKER":
                raise ApiError(400, -1165, "A limit order in a buy OCO must be below.")
            if below.startswith("STOP_LOSS"):
                raise ApiError(400, -1196, "A stop loss order in a buy OCO must be above.")
            if above.startswith("TAKE_PROFIT"):
                raise ApiError(400, -1198, "A take profit order in a buy OCO must be below.")
        legs: dict[str, tuple[str, Decimal | None, Decimal | None, str | None]] = {}
        for leg, kind in kinds.items():
            price = self._decimal(params, f"{leg}Price")
            stop = self._decimal(params, f"{leg}StopPrice")
            tif = params.get(f"{leg}TimeInForce")
            if kind in ("LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and price is None:
                raise mandatory(f"{leg}Price")
            if kind in STOP_KINDS and stop is None:
                raise mandatory(f"{leg}StopPrice")
            if kind in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
                if tif not in ("GTC", "IOC", "FOK"):
                    raise mandatory(f"{leg}TimeInForce")
            else:
                tif = None
            self._check_filters(spec, price, qty, stop if stop is not None else ZERO)
            if stop is not None:
                self._check_price(spec, stop)
            legs[leg] = (kind, price, stop, tif)

        def ref(leg: str) -> Decimal:  # the price the relationship rule compares with the last price
            kind, price, stop, _ = legs[leg]  # LIMIT_MAKER / TAKE_PROFIT_LIMIT: price; the others: stopPrice
            return price if kind in ("LIMIT_MAKER", "TAKE_PROFIT_LIMIT") else stop  # type: ignore[return-value]

        last = self.last_price(spec.symbol)
        if not (ref("above") > last > ref("below")):
            raise ApiError(400, -2010, "The relationship of the prices for the orders is not correct.")
        for kind, price, _, _ in legs.values():
            if kind == "LIMIT_MAKER" and self._crossing(spec, side, price, qty):
                raise ApiError(400, -2010, "Order would immediately match and take.")
        coids = {leg: params.get(f"{leg}ClientOrderId") or f"x-{self._next_order + i}"
                 for i, leg in ((1, "below"), (2, "above"))}  # fmt: skip
        list_coid = params.get("listClientOrderId") or f"list-{self._next_list + 1}"
        if coids["above"] == coids["below"] or any(
            lst.list_client_order_id == list_coid and lst.symbol == spec.symbol and lst.status != "ALL_DONE"
            for lst in self.order_lists.values()
        ):
            raise ApiError(400, -2010, "Duplicate order sent.")
        for coid in coids.values():
            self._check_new_id(spec.symbol, coid)
        # one lock for the pair: the quantity (sell), or the quantity at the highest price either leg may pay
        worst = max((price if price is not None else stop) or ZERO for _, price, stop, _ in legs.values())
        lock = qty if side == "SELL" else qty * worst
        self._lock(spec, side, lock)
        self._next_list += 1
        now = self.now_ms()
        lst = OrderList(self._next_list, list_coid, spec.symbol, side, [], lock, now)
        self.order_lists[lst.order_list_id] = lst
        for leg in ("below", "above"):
            kind, price, stop, tif = legs[leg]
            self._next_order += 1
            order = Order(
                self._next_order, coids[leg], spec.symbol, side, kind, tif, price or ZERO, qty, now,
                stop_price=stop or ZERO, working=kind == "LIMIT_MAKER", order_list_id=lst.order_list_id,
            )  # fmt: skip
            self.orders[order.order_id] = order
            lst.order_ids.append(order.order_id)
        resp = params.get("newOrderRespType", "FULL")
        orders = [self.orders[oid] for oid in lst.order_ids]
        reports = [o.ack() if resp == "ACK" else o.full([] if resp == "FULL" else None) for o in orders]
        return self._list_view(lst, reports, now)

    def _list_view(self, lst: OrderList, reports: list[dict[str, Any]], now: int) -> dict[str, Any]:
        return {
            "orderListId": lst.order_list_id, "contingencyType": "OCO", "listStatusType": lst.status_type,
            "listOrderStatus": lst.status, "listClientOrderId": lst.list_client_order_id, "transactionTime": now,
            "symbol": lst.symbol,
            "orders": [{"symbol": lst.symbol, "orderId": oid, "clientOrderId": self.orders[oid].client_order_id}
                       for oid in lst.order_ids],
            "orderReports": reports,
        }  # fmt: skip

    def _cancel_list(self, lst: OrderList) -> dict[str, Any]:
        now = self.now_ms()
        spec = self.symbols[lst.symbol]
        if lst.locked:
            balance = self.balances[spec.quote if lst.side == "BUY" else spec.base]
            balance[1] -= lst.locked
            balance[0] += lst.locked
            lst.locked = ZERO
        reports = []
        for oid in lst.order_ids:
            order = self.orders[oid]
            if order.open:
                self._release(order)
                order.status, order.update_time = "CANCELED", now
            reports.append(order.canceled(f"cancel-{order.order_id}", now))
        lst.status_type = lst.status = "ALL_DONE"
        return self._list_view(lst, reports, now)

    def cancel_order_list(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        lid, lcoid = params.get("orderListId"), params.get("listClientOrderId")
        if lid is None and lcoid is None:
            raise ApiError(
                400, -1102, "Param 'orderListId' or 'listClientOrderId' must be sent, but both were empty/null!"
            )
        for lst in sorted(self.order_lists.values(), key=lambda x: -x.order_list_id):
            if lst.symbol != spec.symbol:
                continue
            if (lid is not None and str(lst.order_list_id) == lid) or (
                lid is None and lst.list_client_order_id == lcoid
            ):
                if any(self.orders[oid].open for oid in lst.order_ids):
                    return self._cancel_list(lst)
                break
        raise ApiError(400, -2011, "Unknown order sent.")


def _mid(bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> Decimal:
    if bids and asks:
        return (bids[0][0] + asks[0][0]) / 2
    return bids[0][0] if bids else asks[0][0] if asks else ZERO


ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "ping"): (BinanceServer.ping, False),
    ("GET", "time"): (BinanceServer.server_time, False),
    ("GET", "exchangeInfo"): (BinanceServer.exchange_info, False),
    ("GET", "depth"): (BinanceServer.depth, False),
    ("GET", "ticker/bookTicker"): (BinanceServer.book_ticker, False),
    ("GET", "account"): (BinanceServer.account, True),
    ("POST", "order"): (BinanceServer.new_order, True),
    ("GET", "order"): (BinanceServer.get_order, True),
    ("DELETE", "order"): (BinanceServer.cancel_order, True),
    ("POST", "orderList/oco"): (BinanceServer.new_oco, True),
    ("DELETE", "orderList"): (BinanceServer.cancel_order_list, True),
    ("GET", "openOrders"): (BinanceServer.get_open_orders, True),
    ("GET", "myTrades"): (BinanceServer.my_trades, True),
}


# ------------------------------------------------------------------------------------------ USD-M futures


@dataclass
class FuturesPosition:
    amount: Decimal = ZERO  # signed (SHORT positions in hedge mode are negative, as positionRisk shows them)
    entry: Decimal = ZERO


@dataclass
class AlgoOrder:
    """A conditional algo order (Algo Order API). ``status`` is NEW, CANCELED, REJECTED or EXPIRED, or TRIGGERED once
    its actual order is placed; the view answers FINISHED when that order is no longer open."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    position_side: str
    type: str  # STOP_MARKET / TAKE_PROFIT_MARKET / STOP / TAKE_PROFIT
    time_in_force: str
    qty: Decimal
    price: Decimal  # ZERO for the market kinds
    trigger_price: Decimal
    working_type: str
    reduce_only: bool
    create_time: int
    update_time: int = 0
    status: str = "NEW"
    trigger_time: int = 0
    actual_order_id: int | None = None

    def __post_init__(self) -> None:
        self.update_time = self.update_time or self.create_time

    @property
    def market(self) -> bool:
        return self.type in ("STOP_MARKET", "TAKE_PROFIT_MARKET")


class FuturesVenue:
    """USD-M perpetuals (``/fapi``): one-way (BOTH) or hedge (LONG / SHORT) positions, leverage and margin type per
    symbol, USDT wallet, margin checks (-2019), reduce-only (-2022), duplicate client order ids (-4116), amend (PUT
    order), userTrades. ``POST v1/order`` takes LIMIT and MARKET only: the conditional types answer -4120 (Binance
    moved them to the Algo Order API on 2025-12-09). Algo orders (``v1/algoOrder``, ``v1/openAlgoOrders``; ids from
    their own counter, ``algos``) wait with algoStatus NEW, triggered by the last or the mark price (workingType); no
    margin is checked or held until they trigger. A trigger either rejects the algo (REJECTED: margin insufficient
    for what it opens, or a reduce-only / closing one with nothing left to reduce) or places its actual order in
    ``orders`` (clientOrderId ``algo-<algoId>``, type MARKET for the *_MARKET kinds or LIMIT at the algo's price,
    origType the algo type, stopPrice the trigger price): the algo is TRIGGERED while that order is open, FINISHED
    once it is filled, canceled or expired."""

    def __init__(self, server: BinanceServer) -> None:
        self.server = server
        self.symbols: dict[str, SymbolSpec] = {
            "BTCUSDT": SymbolSpec(
                "BTCUSDT", "BTC", "USDT", tick_size=D("0.10"), min_price=D("0.10"), step_size=D("0.001"),
                min_qty=D("0.001"), max_qty=D("1000"), min_notional=D("100"),
            )
        }  # fmt: skip
        self.bids = {"BTCUSDT": [(D("49999.00"), D("2")), (D("49990.00"), D("10"))]}
        self.asks = {"BTCUSDT": [(D("50001.00"), D("2")), (D("50010.00"), D("10"))]}
        self.mark = {"BTCUSDT": D("50000")}
        self.last_prices: dict[str, Decimal] = {}  # set_last_price; unset: the mid of the book
        self.wallet = D("10000")
        self.leverage: dict[str, int] = defaultdict(lambda: 20)
        self.margin_type: dict[str, str] = defaultdict(lambda: "CROSSED")
        self.dual_side = False
        self.positions: dict[str, FuturesPosition] = defaultdict(FuturesPosition)  # one-way (BOTH) per symbol
        self.hedge_positions: dict[tuple[str, str], FuturesPosition] = defaultdict(FuturesPosition)  # LONG / SHORT
        self.orders: dict[int, Order] = {}
        self.reduce_only: dict[int, bool] = {}
        self.algos: dict[int, AlgoOrder] = {}
        self._next_algo = 3000
        self.trades: list[dict[str, Any]] = []
        self.taker_rate, self.maker_rate = D("0.0004"), D("0.0002")
        self.weight_limit = 2400  # REQUEST_WEIGHT per minute

    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        spec = self.symbols.get(params.get("symbol", ""))
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def _position(self, symbol: str, side: str) -> FuturesPosition:
        return self.positions[symbol] if side == "BOTH" else self.hedge_positions[(symbol, side)]

    def _all_positions(self) -> Iterator[tuple[str, FuturesPosition]]:
        yield from self.positions.items()
        for (symbol, _), pos in self.hedge_positions.items():
            yield symbol, pos

    def _pos_upnl(self, symbol: str, pos: FuturesPosition) -> Decimal:
        return (self.mark[symbol] - pos.entry) * pos.amount

    def _upnl(self) -> Decimal:
        return sum((self._pos_upnl(s, p) for s, p in self._all_positions()), ZERO)

    def _reduces(self, order: Order) -> bool:
        """Reduce-only (one-way) or closing its side (hedge: SELL LONG, BUY SHORT)."""
        return self.reduce_only.get(order.order_id, False) or (order.position_side, order.side) in (
            ("LONG", "SELL"), ("SHORT", "BUY"),
        )  # fmt: skip

    def _initial_margin(self) -> Decimal:
        im = ZERO
        for sym, pos in self._all_positions():
            im += abs(pos.amount) * self.mark[sym] / self.leverage[sym]
        for o in self.orders.values():  # resting limit orders (NEW algo orders hold no margin)
            if o.open and not self._reduces(o):
                im += (o.orig_qty - o.executed) * o.price / self.leverage[o.symbol]
        return im

    def available(self) -> Decimal:
        return self.wallet + self._upnl() - self._initial_margin()

    def last_price(self, symbol: str) -> Decimal:
        if symbol in self.last_prices:
            return self.last_prices[symbol]
        return _mid(self.bids.get(symbol, []), self.asks.get(symbol, []))

    def _trigger_price(self, symbol: str, working_type: str) -> Decimal:
        return self.mark[symbol] if working_type == "MARK_PRICE" else self.last_price(symbol)

    # ---------------------------------------------------------------------------------- test hooks

    def fill(self, order_id: int, qty: Decimal, price: Decimal | None = None) -> dict[str, Any]:
        order = self.orders[order_id]
        assert order.open and qty <= order.orig_qty - order.executed
        return self._execute(order, price if price is not None else order.price, qty, maker=True)

    def set_last_price(self, symbol: str, price: Decimal | str) -> list[Order]:
        """The contract's last price: the NEW CONTRACT_PRICE algo orders it reaches trigger. Returns the actual
        orders placed (a rejected trigger places none)."""
        self.last_prices[symbol] = D(str(price))
        return self._check_stops(symbol, "CONTRACT_PRICE")

    def set_mark_price(self, symbol: str, price: Decimal | str) -> list[Order]:
        """The mark price (also the PnL and margin reference): the NEW MARK_PRICE algo orders it reaches trigger.
        Returns the actual orders placed (a rejected trigger places none)."""
        self.mark[symbol] = D(str(price))
        return self._check_stops(symbol, "MARK_PRICE")

    def algo(self, client_algo_id: str) -> AlgoOrder:
        """The newest algo order with this clientAlgoId."""
        return max((a for a in self.algos.values() if a.client_algo_id == client_algo_id), key=lambda a: a.algo_id)

    def _check_stops(self, symbol: str, working_type: str) -> list[Order]:
        price = self._trigger_price(symbol, working_type)
        out = []
        for algo in sorted(self.algos.values(), key=lambda a: a.algo_id):
            if algo.symbol != symbol or algo.status != "NEW" or algo.working_type != working_type:
                continue
            if triggers(algo.type, algo.side, algo.trigger_price, price):
                order = self._trigger(algo)
                if order is not None:
                    out.append(order)
        return out

    def _trigger(self, algo: AlgoOrder) -> Order | None:
        """An algo order reached its trigger price. Rejected (no order) when a reduce-only / closing one has nothing
        left to reduce, or when what it opens needs more margin than is available. Else its actual order: the
        *_MARKET kinds take from the book as a MARKET order (what the book cannot fill expires), STOP /
        TAKE_PROFIT become a LIMIT order at their price (the rest stays open if GTC, else expires); a reduce-only
        quantity is clipped to the position."""
        now = self.server.now_ms()
        algo.trigger_time = algo.update_time = now
        pos = self._position(algo.symbol, algo.position_side)
        qty = algo.qty
        closing = (algo.position_side, algo.side) in (("LONG", "SELL"), ("SHORT", "BUY"))
        if algo.reduce_only or closing:
            if pos.amount == 0 or (pos.amount > 0) == (algo.side == "BUY"):
                algo.status = "REJECTED"
                return None
            qty = min(qty, abs(pos.amount))
        else:
            if algo.position_side == "BOTH":
                same = pos.amount == 0 or (pos.amount > 0) == (algo.side == "BUY")
                opening = qty if same else ZERO
            else:
                opening = qty
            book = self.asks[algo.symbol] if algo.side == "BUY" else self.bids[algo.symbol]
            ref = algo.price if not algo.market else book[0][0] if book else algo.trigger_price
            if opening and opening * ref / self.leverage[algo.symbol] > self.available():
                algo.status = "REJECTED"
                return None
        self.server._next_order += 1
        order = Order(self.server._next_order, f"algo-{algo.algo_id}", algo.symbol, algo.side,
                      "MARKET" if algo.market else "LIMIT", algo.time_in_force, algo.price, qty, now,
                      stop_price=algo.trigger_price, orig_type=algo.type, working_type=algo.working_type,
                      position_side=algo.position_side)  # fmt: skip
        self.orders[order.order_id] = order
        self.reduce_only[order.order_id] = algo.reduce_only
        algo.status, algo.actual_order_id = "TRIGGERED", order.order_id
        rest = self._match(order, None if algo.market else algo.price, qty)
        if rest > 0 and (algo.market or algo.time_in_force != "GTC"):
            order.status = "EXPIRED"
        return order

    def _match(self, order: Order, limit: Decimal | None, qty: Decimal) -> Decimal:
        """Take from the book up to ``limit`` as a taker; what is left of ``qty``."""
        book = self.asks[order.symbol] if order.side == "BUY" else self.bids[order.symbol]
        left = qty
        for i, (p, size) in enumerate(list(book)):
            if left <= 0 or (limit is not None and (p > limit if order.side == "BUY" else p < limit)):
                break
            take = min(size, left)
            self._execute(order, p, take, maker=False)
            left -= take
            book[i] = (p, size - take)
        book[:] = [(p, q) for p, q in book if q > 0]
        return left

    def _execute(self, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> dict[str, Any]:
        pos = self._position(order.symbol, order.position_side)
        signed = qty if order.side == "BUY" else -qty
        realized = ZERO
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            total = pos.amount + signed
            pos.entry = (pos.entry * abs(pos.amount) + price * qty) / abs(total)
            pos.amount = total
        else:
            closed = min(abs(pos.amount), qty)
            realized = (price - pos.entry) * closed * (1 if pos.amount > 0 else -1)
            pos.amount += signed
            if pos.amount == 0:
                pos.entry = ZERO
            elif (pos.amount > 0) == (signed > 0):
                pos.entry = price  # flipped: the rest opens at this price
        commission = (price * qty * (self.maker_rate if maker else self.taker_rate)).quantize(D("1e-8"))
        self.wallet += realized - commission
        self.server._next_trade += 1
        now = self.server.now_ms()
        trade = {
            "buyer": order.side == "BUY", "commission": s8(commission), "commissionAsset": "USDT",
            "id": self.server._next_trade, "maker": maker, "orderId": order.order_id, "price": s8(price),
            "qty": s8(qty), "quoteQty": s8(price * qty), "realizedPnl": s8(realized), "side": order.side,
            "positionSide": order.position_side, "symbol": order.symbol, "time": now,
        }  # fmt: skip
        self.trades.append(trade)
        self.server._unlist("futures", trade["id"], now)
        order.executed += qty
        order.quote_qty += price * qty
        order.update_time = now
        order.status = "FILLED" if order.executed == order.orig_qty else "PARTIALLY_FILLED"
        return trade

    def view(self, order: Order) -> dict[str, Any]:
        avg = order.quote_qty / order.executed if order.executed else ZERO
        return {
            "orderId": order.order_id, "symbol": order.symbol, "status": order.status,
            "clientOrderId": order.client_order_id, "price": s8(order.price), "avgPrice": s8(avg),
            "origQty": s8(order.orig_qty), "executedQty": s8(order.executed), "cumQuote": s8(order.quote_qty),
            "timeInForce": order.time_in_force or "GTC", "type": order.type, "origType": order.orig_type,
            "reduceOnly": self.reduce_only.get(order.order_id, False), "closePosition": False,
            "side": order.side, "positionSide": order.position_side,
            "stopPrice": s8(order.stop_price) if order.stop_price else "0", "workingType": order.working_type,
            "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0, "time": order.time_ms, "updateTime": order.update_time,
        }  # fmt: skip

    # ---------------------------------------------------------------------------------- endpoints

    def ping(self, params: dict[str, str]) -> Any:
        return {}

    def server_time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.server.now_ms()}

    def exchange_info(self, params: dict[str, str]) -> Any:
        symbols = []
        for spec in self.symbols.values():
            symbols.append({
                "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": spec.base, "quoteAsset": spec.quote,
                "marginAsset": spec.quote, "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
                "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "orderTypes": list(FUTURES_TYPES), "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": s8(spec.min_price), "maxPrice": s8(spec.max_price),
                     "tickSize": s8(spec.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": s8(spec.min_qty), "maxQty": s8(spec.max_qty),
                     "stepSize": s8(spec.step_size)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": s8(spec.min_qty), "maxQty": s8(spec.max_qty),
                     "stepSize": s8(spec.step_size)},
                    {"filterType": "MIN_NOTIONAL", "notional": s8(spec.min_notional)},
                ],
            })  # fmt: skip
        rate_limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ]
        return {"timezone": "UTC", "serverTime": self.server.now_ms(), "rateLimits": rate_limits,
                "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True}],
                "symbols": symbols}  # fmt: skip

    def depth(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        limit = int(params.get("limit", "500"))
        now = self.server.now_ms()
        return {
            "lastUpdateId": 1027024, "E": now, "T": now,
            "bids": [[s8(p), s8(q)] for p, q in self.bids[spec.symbol][:limit]],
            "asks": [[s8(p), s8(q)] for p, q in self.asks[spec.symbol][:limit]],
        }  # fmt: skip

    def book_ticker(self, params: dict[str, str]) -> Any:
        def row(symbol: str) -> dict[str, Any]:
            bids, asks = self.bids.get(symbol, []), self.asks.get(symbol, [])
            bid, bid_qty = bids[0] if bids else (ZERO, ZERO)
            ask, ask_qty = asks[0] if asks else (ZERO, ZERO)
            return {"lastUpdateId": 1027024, "symbol": symbol, "bidPrice": s8(bid), "bidQty": s8(bid_qty),
                    "askPrice": s8(ask), "askQty": s8(ask_qty), "time": self.server.now_ms()}  # fmt: skip

        if params.get("symbol") is not None:
            return row(self._spec(params).symbol)
        return [row(symbol) for symbol in self.symbols]

    def account(self, params: dict[str, str]) -> Any:
        upnl = self._upnl()
        im = self._initial_margin()
        now = self.server.now_ms()
        return {
            "totalInitialMargin": s8(im), "totalMaintMargin": s8(ZERO), "totalWalletBalance": s8(self.wallet),
            "totalUnrealizedProfit": s8(upnl), "totalMarginBalance": s8(self.wallet + upnl),
            "totalPositionInitialMargin": s8(im), "totalOpenOrderInitialMargin": s8(ZERO),
            "totalCrossWalletBalance": s8(self.wallet), "totalCrossUnPnl": s8(upnl),
            "availableBalance": s8(self.available()), "maxWithdrawAmount": s8(self.available()),
            "assets": [{"asset": "USDT", "walletBalance": s8(self.wallet), "unrealizedProfit": s8(upnl),
                        "marginBalance": s8(self.wallet + upnl), "maintMargin": s8(ZERO), "initialMargin": s8(im),
                        "positionInitialMargin": s8(im), "openOrderInitialMargin": s8(ZERO),
                        "crossWalletBalance": s8(self.wallet), "crossUnPnl": s8(upnl),
                        "availableBalance": s8(self.available()), "maxWithdrawAmount": s8(self.available()),
                        "updateTime": now}],
            "positions": [],
        }  # fmt: skip

    def position_risk(self, params: dict[str, str]) -> Any:
        out = []
        sides = ("LONG", "SHORT") if self.dual_side else ("BOTH",)
        for sym, spec in self.symbols.items():
            if params.get("symbol") not in (None, sym):
                continue
            for side in sides:
                pos = self._position(sym, side)
                out.append({
                    "symbol": spec.symbol, "positionSide": side, "positionAmt": s8(pos.amount),
                    "entryPrice": s8(pos.entry), "breakEvenPrice": s8(pos.entry), "markPrice": s8(self.mark[sym]),
                    "unRealizedProfit": s8(self._pos_upnl(sym, pos)), "liquidationPrice": "0",
                    "isolatedMargin": "0", "notional": s8(pos.amount * self.mark[sym]), "marginAsset": "USDT",
                    "isolatedWallet": "0",
                    "initialMargin": s8(abs(pos.amount) * self.mark[sym] / self.leverage[sym]), "maintMargin": "0",
                    "positionInitialMargin": "0", "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0",
                    "askNotional": "0", "leverage": str(self.leverage[sym]),
                    "marginType": self.margin_type[sym].lower(), "updateTime": self.server.now_ms(),
                })  # fmt: skip
        return out

    def set_leverage(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        lev = int(params.get("leverage", "0"))
        if not 1 <= lev <= 125:
            raise ApiError(400, -4028, f"Leverage {lev} is not valid")
        self.leverage[spec.symbol] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": spec.symbol}

    def set_margin_type(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        kind = params.get("marginType", "").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise ApiError(400, -1116, "Invalid marginType.")
        if self.margin_type[spec.symbol] == kind:
            raise ApiError(400, -4046, "No need to change margin type.")
        self.margin_type[spec.symbol] = kind
        return {"code": 200, "msg": "success"}

    def set_dual(self, params: dict[str, str]) -> Any:
        dual = params.get("dualSidePosition") == "true"
        if dual == self.dual_side:
            raise ApiError(400, -4059, "No need to change position side.")
        if any(pos.amount != 0 for _, pos in self._all_positions()):
            raise ApiError(400, -4068, "Position side cannot be changed if there exists position.")
        if any(o.open for o in self.orders.values()) or any(a.status == "NEW" for a in self.algos.values()):
            raise ApiError(400, -4067, "Position side cannot be changed if there exists open orders.")
        self.dual_side = dual
        return {"code": 200, "msg": "success"}

    def get_dual(self, params: dict[str, str]) -> Any:
        return {"dualSidePosition": self.dual_side}

    def _position_side(self, params: dict[str, str]) -> str:
        """The order's position side under the account's mode (-4060 / -4061; reduceOnly not sent in hedge mode)."""
        position_side = params.get("positionSide") or None
        if position_side not in (None, "BOTH", "LONG", "SHORT"):
            raise ApiError(400, -4060, "Invalid position side.")
        if self.dual_side:
            if position_side not in ("LONG", "SHORT"):
                raise ApiError(400, -4061, "Order's position side does not match user's setting.")
            if "reduceOnly" in params:
                raise not_required("reduceOnly")
        elif position_side not in (None, "BOTH"):
            raise ApiError(400, -4061, "Order's position side does not match user's setting.")
        return position_side or "BOTH"

    def _check_order(
        self,
        spec: SymbolSpec,
        side: str,
        qty: Decimal,
        prices: tuple[Decimal | None, ...],
        position_side: str,
        reduce_only: bool,
        ref: Decimal,
    ) -> Decimal:
        """Tick size, step, reduce-only and minimum notional (``ref``: the price the notional is taken at); the
        quantity the order would open (ZERO for a reduce-only or closing one)."""
        for p in prices:
            if p is not None and (p < spec.min_price or p % spec.tick_size != 0):
                raise ApiError(400, -4014, "Price not increased by tick size.")
        if qty < spec.min_qty or qty % spec.step_size != 0:
            raise ApiError(400, -4003, "Quantity less than or equal to zero.")
        pos = self._position(spec.symbol, position_side)
        signed = qty if side == "BUY" else -qty
        closing = (position_side, side) in (("LONG", "SELL"), ("SHORT", "BUY"))
        if closing and qty > abs(pos.amount):
            raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
        if reduce_only and (pos.amount == 0 or (pos.amount > 0) == (signed > 0) or qty > abs(pos.amount)):
            raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
        if not (reduce_only or closing) and ref * qty < spec.min_notional:
            raise ApiError(400, -4164, f"Order's notional must be no smaller than {spec.min_notional:f} "
                                       "(unless you choose reduce only).")  # fmt: skip
        if position_side == "BOTH":
            return qty if not reduce_only and (pos.amount == 0 or (pos.amount > 0) == (signed > 0)) else ZERO
        return ZERO if closing else qty

    def new_order(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        side, kind, tif = params.get("side"), params.get("type"), params.get("timeInForce")
        qty = BinanceServer._decimal(params, "quantity")
        price = BinanceServer._decimal(params, "price")
        if side not in ("BUY", "SELL") or qty is None:
            raise mandatory("quantity")
        if kind == "LIMIT" and (price is None or tif not in ("GTC", "IOC", "FOK", "GTX")):
            raise mandatory("price")
        if kind not in FUTURES_TYPES:
            raise ApiError(400, -1116, "Invalid orderType.")
        if kind in FUTURES_STOPS:  # since 2025-12-09: the Algo Order API only
            raise ApiError(400, -4120, ALGO_ONLY)
        working_type = params.get("workingType") or "CONTRACT_PRICE"
        if working_type not in WORKING_TYPES:
            raise ApiError(400, -4031, "Invalid parameter working type")
        position_side = self._position_side(params)
        coid = params.get("newClientOrderId") or f"x-{self.server._next_order + 1}"
        if any(o.client_order_id == coid and o.open for o in self.orders.values()):
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        reduce_only = params.get("reduceOnly") == "true"
        book = self.asks[spec.symbol] if side == "BUY" else self.bids[spec.symbol]
        ref = price if price is not None else book[0][0]
        opening = self._check_order(spec, side, qty, (price,), position_side, reduce_only, ref)
        if opening and opening * ref / self.leverage[spec.symbol] > self.available():
            raise ApiError(400, -2019, "Margin is insufficient.")
        self.server._next_order += 1
        order = Order(self.server._next_order, coid, spec.symbol, side, kind, tif, price or ZERO, qty,
                      self.server.now_ms(), working_type=working_type, position_side=position_side)  # fmt: skip
        self.orders[order.order_id] = order
        self.reduce_only[order.order_id] = reduce_only
        left = self._match(order, price, qty)
        if left > 0 and not (kind == "LIMIT" and tif == "GTC"):
            order.status = "EXPIRED"
        return self.view(order)  # RESULT: futures answers carry no fills; they are in userTrades

    def _find(self, params: dict[str, str], unknown: tuple[int, str]) -> Order:
        spec = self._spec(params)
        oid, coid = params.get("orderId"), params.get("origClientOrderId")
        for o in sorted(self.orders.values(), key=lambda o: -o.order_id):
            if o.symbol == spec.symbol and (
                (oid is not None and str(o.order_id) == oid) or (oid is None and o.client_order_id == coid)
            ):
                return o
        raise ApiError(400, *unknown)

    def get_order(self, params: dict[str, str]) -> Any:
        return self.view(self._find(params, (-2013, "Order does not exist.")))

    def cancel_order(self, params: dict[str, str]) -> Any:
        order = self._find(params, (-2011, "Unknown order sent."))
        if not order.open:
            raise ApiError(400, -2011, "Unknown order sent.")
        order.status, order.update_time = "CANCELED", self.server.now_ms()
        return self.view(order)

    def amend_order(self, params: dict[str, str]) -> Any:
        order = self._find(params, (-2013, "Order does not exist."))
        if not order.open:
            raise ApiError(400, -2013, "Order does not exist.")
        if order.orig_type != "LIMIT":
            raise ApiError(400, -5025, "Only limit order is supported.")
        qty = BinanceServer._decimal(params, "quantity")
        price = BinanceServer._decimal(params, "price")
        if qty is None or price is None:
            raise mandatory("price")
        if qty <= order.executed:
            raise ApiError(400, -4003, "Quantity less than or equal to zero.")
        order.orig_qty, order.price, order.update_time = qty, price, self.server.now_ms()
        return self.view(order)

    def get_open_orders(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol")
        return [self.view(o) for o in self.orders.values() if o.open and symbol in (None, o.symbol)]

    # ---------------------------------------------------------------------------------- algo orders

    def algo_view(self, algo: AlgoOrder) -> dict[str, Any]:
        order = self.orders.get(algo.actual_order_id) if algo.actual_order_id is not None else None
        status, update = algo.status, algo.update_time
        if status == "TRIGGERED" and order is not None and not order.open:
            status, update = "FINISHED", max(update, order.update_time)
        avg = order.quote_qty / order.executed if order is not None and order.executed else ZERO
        return {
            "algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "algoType": "CONDITIONAL",
            "orderType": algo.type, "symbol": algo.symbol, "side": algo.side, "positionSide": algo.position_side,
            "timeInForce": algo.time_in_force, "quantity": s8(algo.qty), "algoStatus": status,
            "actualOrderId": str(algo.actual_order_id) if algo.actual_order_id is not None else "",
            "actualPrice": s8(avg), "triggerPrice": s8(algo.trigger_price), "price": s8(algo.price),
            "icebergQuantity": None, "tpTriggerPrice": "0.000", "tpPrice": "0.000", "slTriggerPrice": "0.000",
            "slPrice": "0.000", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": algo.working_type, "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
            "reduceOnly": algo.reduce_only, "createTime": algo.create_time, "updateTime": update,
            "triggerTime": algo.trigger_time, "goodTillDate": 0,
        }  # fmt: skip

    def new_algo_order(self, params: dict[str, str]) -> Any:
        """POST v1/algoOrder: a conditional order waiting for its trigger price (no margin check until then)."""
        spec = self._spec(params)
        algo_type = params.get("algoType")
        if not algo_type:
            raise mandatory("algoType")
        if algo_type != "CONDITIONAL":
            raise ApiError(400, -1116, "Invalid algoType.")
        side, kind = params.get("side"), params.get("type")
        if side not in ("BUY", "SELL"):
            raise mandatory("side")
        if kind not in FUTURES_STOPS:
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = BinanceServer._decimal(params, "quantity")
        if qty is None:
            raise mandatory("quantity")
        price = BinanceServer._decimal(params, "price")
        if kind in ("STOP", "TAKE_PROFIT") and price is None:
            raise mandatory("price")
        trigger = BinanceServer._decimal(params, "triggerPrice")
        if trigger is None:
            raise mandatory("triggerPrice")
        tif = params.get("timeInForce") or "GTC"
        if tif not in ("GTC", "IOC", "FOK", "GTX"):
            raise ApiError(400, -1115, "Invalid timeInForce.")
        working_type = params.get("workingType") or "CONTRACT_PRICE"
        if working_type not in WORKING_TYPES:
            raise ApiError(400, -4031, "Invalid parameter working type")
        position_side = self._position_side(params)
        caid = params.get("clientAlgoId")
        if caid is not None and not re.fullmatch(CLIENT_ALGO_ID, caid):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'clientAlgoId'; legal range is "
                                       f"'{CLIENT_ALGO_ID}'.")  # fmt: skip
        caid = caid or f"x-algo-{self._next_algo + 1}"
        if any(a.client_algo_id == caid and a.status == "NEW" for a in self.algos.values()):
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        reduce_only = params.get("reduceOnly") == "true"
        market = kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET")
        if market:
            price = None  # a market kind has no price of its own
        ref = price if price is not None else trigger
        self._check_order(spec, side, qty, (price, trigger), position_side, reduce_only, ref)
        if triggers(kind, side, trigger, self._trigger_price(spec.symbol, working_type)):
            raise ApiError(400, -2021, "Order would immediately trigger.")
        self._next_algo += 1
        algo = AlgoOrder(self._next_algo, caid, spec.symbol, side, position_side, kind, tif, qty, price or ZERO,
                         trigger, working_type, reduce_only, self.server.now_ms())  # fmt: skip
        self.algos[algo.algo_id] = algo
        return self.algo_view(algo)

    def _find_algo(self, params: dict[str, str], unknown: tuple[int, str]) -> AlgoOrder:
        aid, caid = params.get("algoId"), params.get("clientAlgoId")
        if not aid and not caid:
            raise mandatory("algoId")
        for algo in sorted(self.algos.values(), key=lambda a: -a.algo_id):  # the newest with that id
            if (str(algo.algo_id) == aid) if aid else algo.client_algo_id == caid:
                return algo
        raise ApiError(400, *unknown)

    def get_algo_order(self, params: dict[str, str]) -> Any:
        return self.algo_view(self._find_algo(params, (-2013, "Order does not exist.")))

    def cancel_algo_order(self, params: dict[str, str]) -> Any:
        algo = self._find_algo(params, (-2011, "Unknown order sent."))
        if algo.status != "NEW":
            raise ApiError(400, -2011, "Unknown order sent.")
        algo.status, algo.update_time = "CANCELED", self.server.now_ms()
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def get_open_algo_orders(self, params: dict[str, str]) -> Any:
        symbol, algo_type = params.get("symbol") or None, params.get("algoType") or None
        if symbol is not None:
            self._spec(params)
        return [
            self.algo_view(a)
            for a in sorted(self.algos.values(), key=lambda a: a.algo_id)
            if a.status == "NEW" and symbol in (None, a.symbol) and algo_type in (None, "CONDITIONAL")
        ]

    def user_trades(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        oid, from_id = BinanceServer._int(params, "orderId"), BinanceServer._int(params, "fromId")
        start, end = BinanceServer._int(params, "startTime"), BinanceServer._int(params, "endTime")
        if from_id is not None and (start is not None or end is not None):
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        week = 7 * DAY_MS
        if start is not None and end is not None:
            if start > end:
                raise ApiError(400, -1023, "Start time is greater than end time.")
            if end - start > week:
                raise ApiError(400, -1127, "More than 168 hours between startTime and endTime.")
        elif oid is None and from_id is None:  # the 7 days from startTime, before endTime, or the last 7 days
            if start is not None:
                end = start + week
            else:
                end = end if end is not None else self.server.now_ms()
                start = end - week
        limit = min(BinanceServer._int(params, "limit") or 500, 1000)
        unlisted = self.server._unlisted_ids("futures")
        rows = sorted(
            (
                t
                for t in self.trades
                if t["symbol"] == spec.symbol
                and t["id"] not in unlisted
                and (oid is None or t["orderId"] == oid)
                and (from_id is None or t["id"] >= from_id)
                and (start is None or t["time"] >= start)
                and (end is None or t["time"] <= end)
            ),
            key=lambda t: t["id"],
        )
        from_start = from_id is not None or params.get("startTime") not in (None, "")
        return rows[:limit] if from_start else rows[-limit:]  # else the most recent


FUTURES_ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "fapi/v1/ping"): (FuturesVenue.ping, False),
    ("GET", "fapi/v1/time"): (FuturesVenue.server_time, False),
    ("GET", "fapi/v1/exchangeInfo"): (FuturesVenue.exchange_info, False),
    ("GET", "fapi/v1/depth"): (FuturesVenue.depth, False),
    ("GET", "fapi/v1/ticker/bookTicker"): (FuturesVenue.book_ticker, False),
    ("GET", "fapi/v2/account"): (FuturesVenue.account, True),
    ("GET", "fapi/v3/account"): (FuturesVenue.account, True),
    ("GET", "fapi/v2/positionRisk"): (FuturesVenue.position_risk, True),
    ("GET", "fapi/v3/positionRisk"): (FuturesVenue.position_risk, True),
    ("POST", "fapi/v1/leverage"): (FuturesVenue.set_leverage, True),
    ("POST", "fapi/v1/marginType"): (FuturesVenue.set_margin_type, True),
    ("POST", "fapi/v1/positionSide/dual"): (FuturesVenue.set_dual, True),
    ("GET", "fapi/v1/positionSide/dual"): (FuturesVenue.get_dual, True),
    ("POST", "fapi/v1/order"): (FuturesVenue.new_order, True),
    ("GET", "fapi/v1/order"): (FuturesVenue.get_order, True),
    ("DELETE", "fapi/v1/order"): (FuturesVenue.cancel_order, True),
    ("PUT", "fapi/v1/order"): (FuturesVenue.amend_order, True),
    ("GET", "fapi/v1/openOrders"): (FuturesVenue.get_open_orders, True),
    ("POST", "fapi/v1/algoOrder"): (FuturesVenue.new_algo_order, True),
    ("GET", "fapi/v1/algoOrder"): (FuturesVenue.get_algo_order, True),
    ("DELETE", "fapi/v1/algoOrder"): (FuturesVenue.cancel_algo_order, True),
    ("GET", "fapi/v1/openAlgoOrders"): (FuturesVenue.get_open_algo_orders, True),
    ("GET", "fapi/v1/userTrades"): (FuturesVenue.user_trades, True),
}
