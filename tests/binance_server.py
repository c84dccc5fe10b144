"""A local Binance-compatible spot REST server for tests, written from Binance's public API documentation.

Endpoints (``/api/v3``): ``ping``, ``time``, ``exchangeInfo`` (PRICE_FILTER / LOT_SIZE / NOTIONAL filters and
orderTypes), ``depth``, ``order`` (POST / GET / DELETE), ``openOrders``, ``account``, ``myTrades``. Signed endpoints
check the ``X-MBX-APIKEY`` header, the HMAC-SHA256 ``signature`` over query string + body, and ``timestamp``
against ``recvWindow``. Balances lock on resting orders; orders go NEW -> PARTIALLY_FILLED -> FILLED / CANCELED /
EXPIRED; FULL responses carry ``fills[]``. Errors are ``{"code": ..., "msg": ...}`` with the documented codes and
messages; 429 carries ``Retry-After``; every response carries ``X-MBX-USED-WEIGHT-1M``.

Test hooks: :meth:`BinanceServer.fill` (a maker fill of a resting order, e.g. a partial fill),
:meth:`BinanceServer.fail_next` (the next request to a path answers an error), :meth:`BinanceServer.hold_next`
(the next request to a path is processed, then its answer held back: a client timeout with the order placed),
:meth:`BinanceServer.rate_limit_next` (429 with Retry-After, nothing processed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

D = Decimal
ZERO = D(0)
PREFIX = "/api/v3"


def s8(value: Decimal) -> str:
    """Binance writes amounts as strings with 8 decimals."""
    return f"{value:.8f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


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
    order_types: tuple[str, ...] = ("LIMIT", "MARKET")  # the types this server implements

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

    def fill(self) -> dict[str, Any]:
        return {
            "price": s8(self.price), "qty": s8(self.qty), "commission": s8(self.commission),
            "commissionAsset": self.commission_asset, "tradeId": self.id,
        }  # fmt: skip

    def my_trade(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": -1,
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

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def view(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": s8(self.price), "origQty": s8(self.orig_qty),
            "executedQty": s8(self.executed), "cummulativeQuoteQty": s8(self.quote_qty), "status": self.status,
            "timeInForce": self.time_in_force or "GTC", "type": self.type, "side": self.side, "stopPrice": s8(ZERO),
            "icebergQty": s8(ZERO), "time": self.time_ms, "updateTime": self.time_ms, "isWorking": True,
            "workingTime": self.time_ms, "origQuoteOrderQty": s8(ZERO), "selfTradePreventionMode": "EXPIRE_MAKER",
        }  # fmt: skip

    def full(self, fills: list[Trade]) -> dict[str, Any]:
        out = self.view()
        out["transactTime"] = self.time_ms
        for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty", "origQuoteOrderQty"):
            out.pop(key)
        out["fills"] = [t.fill() for t in fills]
        return out


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
        self.balances: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])  # asset -> [free, locked]
        self.balances["USDT"] = [D("100000"), ZERO]
        self.balances["BTC"] = [D("1"), ZERO]
        self.commission_rate = D("0.001")
        self.orders: dict[int, Order] = {}
        self.trades: list[Trade] = []
        self._next_order = 1000
        self._next_trade = 5000
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.holds: dict[str, list[float]] = defaultdict(list)
        self.released = asyncio.Event()
        self.held = asyncio.Event()  # set when a held answer starts waiting
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.weight = 0
        self.futures = FuturesVenue(self)
        self.clock_offset_ms = 0  # the server's clock against ours (recvWindow checks)
        self.drops: dict[str, int] = defaultdict(int)
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

    def fill(self, order_id: int, qty: Decimal, price: Decimal | None = None) -> Trade:
        """A maker fill of resting order ``order_id`` (at its limit price unless given): a partial fill when
        ``qty`` is less than what is left."""
        order = self.orders[order_id]
        assert order.open and qty <= order.orig_qty - order.executed
        return self._execute(order, price if price is not None else order.price, qty, maker=True)

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.open]

    def count_requests(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    # ------------------------------------------------------------------------------------ plumbing

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.path.startswith("/fapi/"):
            name = "fapi/" + name  # e.g. "fapi/v1/order"
        self.requests.append((request.method, name))
        self.weight += 1
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.weight)}
        if self.faults.get(name):
            fault = self.faults[name].pop(0)
            return web.json_response(
                {"code": fault.code, "msg": fault.msg}, status=fault.status, headers={**headers, **fault.headers}
            )
        if self.drops.get(name):
            self.drops[name] -= 1
            max_s = self.holds[name].pop(0)
            self.held.set()
            try:
                await asyncio.wait_for(self.released.wait(), max_s)
            except TimeoutError:
                pass
            return web.json_response(
                {
                    "code": -1007,
                    "msg": "Timeout waiting for response from backend server. "
                    "Send status unknown; execution status unknown.",
                },
                status=408,
                headers=headers,
            )
        body = await request.text()
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body, keep_blank_values=True))
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
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status, headers=headers)
        if self.holds.get(name):
            max_s = self.holds[name].pop(0)
            self.held.set()
            try:
                await asyncio.wait_for(self.released.wait(), max_s)
            except TimeoutError:
                pass
        return web.json_response(result, headers=headers)

    def _check_signed(self, request: web.Request, params: dict[str, str], body: str) -> None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        total = request.query_string + body  # Binance: totalParams = query string concatenated with the body
        marker = "&signature="
        cut = total.rfind(marker)
        if cut < 0 or "signature" not in params:
            raise ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload, signature = total[:cut], total[cut + len(marker) :]
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise ApiError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        if window > 60000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = int(time.time() * 1000) + self.clock_offset_ms
        if ts >= now + 1000 or now - ts > window:
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
        trade = Trade(
            self._next_trade, order.order_id, order.symbol, price, qty, commission, asset, order.side == "BUY", maker,
            int(time.time() * 1000),
        )  # fmt: skip
        order.executed += qty
        order.quote_qty += notional
        order.trades.append(trade)
        self.trades.append(trade)
        order.status = "FILLED" if order.executed == order.orig_qty else "PARTIALLY_FILLED"
        if order.status == "FILLED" and order.locked and order.side == "BUY":
            quote[1] -= order.locked  # price improvement: give back what is still locked
            quote[0] += order.locked
            order.locked = ZERO
        return trade

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

    def _check_filters(self, spec: SymbolSpec, price: Decimal | None, qty: Decimal, ref: Decimal) -> None:
        if price is not None and (price < spec.min_price or price > spec.max_price or price % spec.tick_size != 0):
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty < spec.min_qty or qty > spec.max_qty or qty % spec.step_size != 0:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if (price if price is not None else ref) * qty < spec.min_notional:
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")

    # ------------------------------------------------------------------------------------ endpoints

    def ping(self, params: dict[str, str]) -> Any:
        return {}

    def server_time(self, params: dict[str, str]) -> Any:
        return {"serverTime": int(time.time() * 1000)}

    def exchange_info(self, params: dict[str, str]) -> Any:
        return {
            "timezone": "UTC", "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
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

    def account(self, params: dict[str, str]) -> Any:
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": int(time.time() * 1000),
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
            raise ApiError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        if kind not in spec.order_types:
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = self._decimal(params, "quantity")
        if qty is None:
            raise ApiError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        price = self._decimal(params, "price")
        tif = params.get("timeInForce")
        if kind == "LIMIT":
            if price is None:
                raise ApiError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(
                    400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
                )
        elif kind == "MARKET":
            if price is not None:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            tif = None
        else:
            raise ApiError(400, -1116, "Invalid orderType.")
        coid = params.get("newClientOrderId") or f"x-{self._next_order + 1}"
        if any(o.client_order_id == coid and o.symbol == spec.symbol and o.open for o in self.orders.values()):
            raise ApiError(400, -2010, "Duplicate order sent.")
        book = self.asks[spec.symbol] if side == "BUY" else self.bids[spec.symbol]
        ref = book[0][0] if book else (price or ZERO)
        self._check_filters(spec, price, qty, ref)
        takes = self._crossing(spec, side, price, qty)
        taken = sum((q for _, q in takes), ZERO)
        if tif == "FOK" and taken < qty:
            takes, taken = [], ZERO
        rests = kind == "LIMIT" and tif == "GTC" and taken < qty
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
        now = int(time.time() * 1000)
        order = Order(self._next_order, coid, spec.symbol, side, kind, tif, price or ZERO, qty, now)
        self.orders[order.order_id] = order
        fills = []
        for p, q in takes:
            fills.append(self._execute(order, p, q, maker=False))
            self._consume(spec.symbol, side, p, q)
        if rests:
            left = qty - order.executed
            if side == "BUY":
                assert price is not None
                order.locked = left * price
                self.balances[spec.quote][0] -= order.locked
                self.balances[spec.quote][1] += order.locked
            else:
                order.locked = left
                self.balances[spec.base][0] -= left
                self.balances[spec.base][1] += left
        elif order.executed < qty:
            order.status = "EXPIRED"  # IOC / FOK remainder, or a market order the book could not fill
        resp = params.get("newOrderRespType", "FULL")
        if resp == "ACK":
            return {"symbol": spec.symbol, "orderId": order.order_id, "orderListId": -1, "clientOrderId": coid,
                    "transactTime": now}  # fmt: skip
        return order.full(fills if resp == "FULL" else [])

    def _consume(self, symbol: str, side: str, price: Decimal, qty: Decimal) -> None:
        book = self.asks[symbol] if side == "BUY" else self.bids[symbol]
        for i, (p, size) in enumerate(book):
            if p == price:
                if size > qty:
                    book[i] = (p, size - qty)
                else:
                    book.pop(i)
                return

    def get_order(self, params: dict[str, str]) -> Any:
        return self._find(params).view()

    def cancel_order(self, params: dict[str, str]) -> Any:
        try:
            order = self._find(params)
        except ApiError:
            raise ApiError(400, -2011, "Unknown order sent.") from None
        if not order.open:
            raise ApiError(400, -2011, "Unknown order sent.")
        spec = self.symbols[order.symbol]
        asset = spec.quote if order.side == "BUY" else spec.base
        self.balances[asset][1] -= order.locked
        self.balances[asset][0] += order.locked
        order.locked = ZERO
        order.status = "CANCELED"
        out = order.view()
        out["origClientOrderId"] = order.client_order_id
        out["clientOrderId"] = params.get("newClientOrderId") or f"cancel-{order.order_id}"
        out["transactTime"] = int(time.time() * 1000)
        return out

    def get_open_orders(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol")
        if symbol is not None:
            self._spec(params)
        return [o.view() for o in self.orders.values() if o.open and (symbol is None or o.symbol == symbol)]

    def my_trades(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        oid = params.get("orderId")
        from_id = int(params.get("fromId", "0"))
        limit = int(params.get("limit", "500"))
        out = [
            t.my_trade()
            for t in self.trades
            if t.symbol == spec.symbol and (oid is None or str(t.order_id) == oid) and t.id >= from_id
        ]
        return out[:limit]


ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "ping"): (BinanceServer.ping, False),
    ("GET", "time"): (BinanceServer.server_time, False),
    ("GET", "exchangeInfo"): (BinanceServer.exchange_info, False),
    ("GET", "depth"): (BinanceServer.depth, False),
    ("GET", "account"): (BinanceServer.account, True),
    ("POST", "order"): (BinanceServer.new_order, True),
    ("GET", "order"): (BinanceServer.get_order, True),
    ("DELETE", "order"): (BinanceServer.cancel_order, True),
    ("GET", "openOrders"): (BinanceServer.get_open_orders, True),
    ("GET", "myTrades"): (BinanceServer.my_trades, True),
}


# ------------------------------------------------------------------------------------------ USD-M futures


@dataclass
class FuturesPosition:
    amount: Decimal = ZERO  # signed (one-way mode, positionSide BOTH)
    entry: Decimal = ZERO


class FuturesVenue:
    """USD-M perpetuals (``/fapi``): one-way positions, leverage and margin type per symbol, USDT wallet, margin
    checks (-2019), reduce-only (-2022), duplicate client order ids (-4116), amend (PUT order), userTrades."""

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
        self.wallet = D("10000")
        self.leverage: dict[str, int] = defaultdict(lambda: 20)
        self.margin_type: dict[str, str] = defaultdict(lambda: "CROSSED")
        self.dual_side = False
        self.positions: dict[str, FuturesPosition] = defaultdict(FuturesPosition)
        self.orders: dict[int, Order] = {}
        self.reduce_only: dict[int, bool] = {}
        self.trades: list[dict[str, Any]] = []
        self.taker_rate, self.maker_rate = D("0.0004"), D("0.0002")

    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        spec = self.symbols.get(params.get("symbol", ""))
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def _upnl(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return (self.mark[symbol] - pos.entry) * pos.amount

    def _initial_margin(self) -> Decimal:
        im = ZERO
        for sym, pos in self.positions.items():
            im += abs(pos.amount) * self.mark[sym] / self.leverage[sym]
        for o in self.orders.values():
            if o.open and not self.reduce_only.get(o.order_id):
                im += (o.orig_qty - o.executed) * o.price / self.leverage[o.symbol]
        return im

    def available(self) -> Decimal:
        return self.wallet + sum((self._upnl(s) for s in self.positions), ZERO) - self._initial_margin()

    def fill(self, order_id: int, qty: Decimal, price: Decimal | None = None) -> dict[str, Any]:
        order = self.orders[order_id]
        assert order.open and qty <= order.orig_qty - order.executed
        return self._execute(order, price if price is not None else order.price, qty, maker=True)

    def _execute(self, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> dict[str, Any]:
        pos = self.positions[order.symbol]
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
        trade = {
            "buyer": order.side == "BUY", "commission": s8(commission), "commissionAsset": "USDT",
            "id": self.server._next_trade, "maker": maker, "orderId": order.order_id, "price": s8(price),
            "qty": s8(qty), "quoteQty": s8(price * qty), "realizedPnl": s8(realized), "side": order.side,
            "positionSide": "BOTH", "symbol": order.symbol, "time": int(time.time() * 1000),
        }  # fmt: skip
        self.trades.append(trade)
        order.executed += qty
        order.quote_qty += price * qty
        order.status = "FILLED" if order.executed == order.orig_qty else "PARTIALLY_FILLED"
        return trade

    def view(self, order: Order) -> dict[str, Any]:
        avg = order.quote_qty / order.executed if order.executed else ZERO
        return {
            "orderId": order.order_id, "symbol": order.symbol, "status": order.status,
            "clientOrderId": order.client_order_id, "price": s8(order.price), "avgPrice": s8(avg),
            "origQty": s8(order.orig_qty), "executedQty": s8(order.executed), "cumQuote": s8(order.quote_qty),
            "timeInForce": order.time_in_force or "GTC", "type": order.type, "origType": order.type,
            "reduceOnly": self.reduce_only.get(order.order_id, False), "closePosition": False,
            "side": order.side, "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
            "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0, "time": order.time_ms, "updateTime": int(time.time() * 1000),
        }  # fmt: skip

    # ---------------------------------------------------------------------------------- endpoints

    def ping(self, params: dict[str, str]) -> Any:
        return {}

    def server_time(self, params: dict[str, str]) -> Any:
        return {"serverTime": int(time.time() * 1000)}

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
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
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
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True}], "symbols": symbols}  # fmt: skip

    def depth(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        limit = int(params.get("limit", "500"))
        now = int(time.time() * 1000)
        return {
            "lastUpdateId": 1027024, "E": now, "T": now,
            "bids": [[s8(p), s8(q)] for p, q in self.bids[spec.symbol][:limit]],
            "asks": [[s8(p), s8(q)] for p, q in self.asks[spec.symbol][:limit]],
        }  # fmt: skip

    def account(self, params: dict[str, str]) -> Any:
        upnl = sum((self._upnl(s) for s in self.positions), ZERO)
        im = self._initial_margin()
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
                        "updateTime": int(time.time() * 1000)}],
            "positions": [],
        }  # fmt: skip

    def position_risk(self, params: dict[str, str]) -> Any:
        out = []
        for sym, spec in self.symbols.items():
            if params.get("symbol") not in (None, sym):
                continue
            pos = self.positions[sym]
            out.append({
                "symbol": spec.symbol, "positionSide": "BOTH", "positionAmt": s8(pos.amount),
                "entryPrice": s8(pos.entry), "breakEvenPrice": s8(pos.entry), "markPrice": s8(self.mark[sym]),
                "unRealizedProfit": s8(self._upnl(sym)), "liquidationPrice": "0", "isolatedMargin": "0",
                "notional": s8(pos.amount * self.mark[sym]), "marginAsset": "USDT", "isolatedWallet": "0",
                "initialMargin": s8(abs(pos.amount) * self.mark[sym] / self.leverage[sym]), "maintMargin": "0",
                "positionInitialMargin": "0", "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0",
                "askNotional": "0", "leverage": str(self.leverage[sym]), "marginType": self.margin_type[sym].lower(),
                "updateTime": int(time.time() * 1000),
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
        self.dual_side = dual
        return {"code": 200, "msg": "success"}

    def get_dual(self, params: dict[str, str]) -> Any:
        return {"dualSidePosition": self.dual_side}

    def new_order(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        side, kind, tif = params.get("side"), params.get("type"), params.get("timeInForce")
        qty = BinanceServer._decimal(params, "quantity")
        price = BinanceServer._decimal(params, "price")
        if side not in ("BUY", "SELL") or qty is None:
            raise ApiError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        if kind == "LIMIT" and (price is None or tif not in ("GTC", "IOC", "FOK", "GTX")):
            raise ApiError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if kind not in ("LIMIT", "MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.")
        coid = params.get("newClientOrderId") or f"x-{self.server._next_order + 1}"
        if any(o.client_order_id == coid and o.open for o in self.orders.values()):
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        if price is not None and (price < spec.min_price or price % spec.tick_size != 0):
            raise ApiError(400, -4014, "Price not increased by tick size.")
        if qty < spec.min_qty or qty % spec.step_size != 0:
            raise ApiError(400, -4003, "Quantity less than or equal to zero.")
        reduce_only = params.get("reduceOnly") == "true"
        pos = self.positions[spec.symbol]
        signed = qty if side == "BUY" else -qty
        if reduce_only and (pos.amount == 0 or (pos.amount > 0) == (signed > 0) or qty > abs(pos.amount)):
            raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
        book = self.asks[spec.symbol] if side == "BUY" else self.bids[spec.symbol]
        ref = price if price is not None else book[0][0]
        if not reduce_only and ref * qty < spec.min_notional:
            raise ApiError(400, -4164, f"Order's notional must be no smaller than {spec.min_notional:f} "
                                       "(unless you choose reduce only).")  # fmt: skip
        opening = qty if reduce_only is False and (pos.amount == 0 or (pos.amount > 0) == (signed > 0)) else ZERO
        if opening and opening * ref / self.leverage[spec.symbol] > self.available():
            raise ApiError(400, -2019, "Margin is insufficient.")
        self.server._next_order += 1
        order = Order(self.server._next_order, coid, spec.symbol, side, kind, tif, price or ZERO, qty,
                      int(time.time() * 1000))  # fmt: skip
        self.orders[order.order_id] = order
        self.reduce_only[order.order_id] = reduce_only
        left = qty
        for i, (p, size) in enumerate(list(book)):
            if left <= 0 or (price is not None and (p > price if side == "BUY" else p < price)):
                break
            take = min(size, left)
            self._execute(order, p, take, maker=False)
            left -= take
            book[i] = (p, size - take)
        book[:] = [(p, q) for p, q in book if q > 0]
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
        order.status = "CANCELED"
        return self.view(order)

    def amend_order(self, params: dict[str, str]) -> Any:
        order = self._find(params, (-2013, "Order does not exist."))
        if not order.open:
            raise ApiError(400, -2013, "Order does not exist.")
        qty = BinanceServer._decimal(params, "quantity")
        price = BinanceServer._decimal(params, "price")
        if qty is None or price is None:
            raise ApiError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if qty <= order.executed:
            raise ApiError(400, -4003, "Quantity less than or equal to zero.")
        order.orig_qty, order.price = qty, price
        return self.view(order)

    def get_open_orders(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol")
        return [self.view(o) for o in self.orders.values() if o.open and symbol in (None, o.symbol)]

    def user_trades(self, params: dict[str, str]) -> Any:
        spec = self._spec(params)
        oid = params.get("orderId")
        return [t for t in self.trades if t["symbol"] == spec.symbol and (oid is None or str(t["orderId"]) == oid)]


FUTURES_ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "fapi/v1/ping"): (FuturesVenue.ping, False),
    ("GET", "fapi/v1/time"): (FuturesVenue.server_time, False),
    ("GET", "fapi/v1/exchangeInfo"): (FuturesVenue.exchange_info, False),
    ("GET", "fapi/v1/depth"): (FuturesVenue.depth, False),
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
    ("GET", "fapi/v1/userTrades"): (FuturesVenue.user_trades, True),
}
