"""Binance spot through ccxt's async client: a ``BrokerClient`` for ``type: binance_spot`` brokers.

The ccxt client is configured so that ``load_markets`` is one ``exchangeInfo`` call (``fetchCurrencies`` and
``fetchMargins`` off, ``fetchMarkets.types = ["spot"]``). A base-URL override (a local server, a proxy) replaces the
host of EVERY entry of ``urls['api']`` and keeps its path; the testnet uses ccxt's sandbox mode and is never
combined with an override (``set_sandbox_mode`` replaces the whole dict).

Money is ``Decimal`` read from Binance's raw JSON strings (``info``), never from ccxt's floats. Precision: quantities
and prices are passed through ccxt's ``amount_to_precision`` (truncation to the LOT_SIZE step) and
``price_to_precision`` (rounding to the PRICE_FILTER tick) as strings, so the values sent are the exchange's
steps as ccxt reads them from exchangeInfo; what the venue accepted (``origQty``, ``price``) is what we report.

Idempotency and unknown outcomes: every order is kept by client order id (sent as ``newClientOrderId``). A
request that timed out or lost its connection leaves the order ``unknown`` (BrokerConnectionError); the next
``place_order`` / ``get_order_status`` for it first queries the order by client order id and places only when
Binance answers "Order does not exist.". A "Duplicate order sent." rejection answers the existing order. 429 /
418 answers are retried after ``Retry-After`` (bounded by ``max_backoff_s``), the request not having been
processed. Fills come from ``fills[]`` of FULL order responses and from ``myTrades`` when a status query shows
more executed than we hold; they are kept by trade id (``fill_id`` = ``tradeId``), so each arrives once.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import structlog

from ordermesh.broker import (
    AuthenticationError,
    Balance,
    BookLevel,
    BrokerClient,
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
from ordermesh.wire import Liquidity, OrderType, PlaceOrder, Side, TimeInForce

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


def dec(value: Any) -> Decimal:
    """A Decimal from Binance's JSON string (``"0.10000000"`` -> ``0.1``); never through float."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        raise TypeError(f"refusing a float for money: {value!r}")
    d = Decimal(str(value))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def binance_error(exc: Exception, last_body: Any = None) -> tuple[str | None, str]:
    """Binance's ``code`` and ``msg``: from the body ccxt puts at the end of its exception message, or (errors
    ccxt matched by message, whose exception carries only the message) from the last JSON answer when its
    ``msg`` is the one in the exception."""
    text = str(exc)
    start = text.find('{"code"')
    if start >= 0:
        try:
            body = json.loads(text[start:])
            return str(body.get("code")), str(body.get("msg", text))
        except ValueError:
            pass
    if isinstance(last_body, dict) and "code" in last_body and str(last_body.get("msg")) in text:
        return str(last_body["code"]), str(last_body["msg"])
    return None, text


def map_error(exc: Exception, last_body: Any = None) -> BrokerError:
    """Our error for a ccxt exception. Order matters: ccxt's InsufficientFunds and OrderNotFound are
    InvalidOrder/ExchangeError subclasses, InvalidNonce and the rate-limit errors are NetworkError subclasses."""
    code, msg = binance_error(exc, last_body)
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


@dataclass
class _Record:
    """What we know of one order at Binance, by our client order id."""

    client_order_id: str
    symbol: str  # as the caller names it
    market: str  # ccxt unified symbol
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    order_type: str  # "market" | "limit"
    time_in_force: str | None
    venue_coid: str  # the newClientOrderId of the current leg (cancel-replace makes new legs)
    reduce_only: bool = False  # futures only; Binance spot has no reduce-only and ignores it
    state: str = "sending"  # sending | unknown | a BrokerOrderState value
    order_id: str = ""
    legs: int = 0
    prior_filled: Decimal = ZERO  # executed by earlier legs (modify = cancel-replace)
    leg_filled: Decimal = ZERO  # executedQty of the current leg
    fills: dict[str, BrokerFill] = field(default_factory=dict)

    def view(self) -> BrokerOrder:
        state = BrokerOrderState.NEW if self.state in ("sending", "unknown") else BrokerOrderState(self.state)
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.order_id,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            state=state,
            filled_qty=self.prior_filled + self.leg_filled,
            limit_price=self.limit_price,
            fills=list(self.fills.values()),
        )


class BinanceSpotAdapter(BrokerClient):
    """A gateway's connection to one Binance spot account (or a Binance-compatible server)."""

    MARKET_TYPE = "spot"  # ccxt's fetchMarkets type: load_markets is one exchangeInfo call
    DEFAULT_TYPE = "spot"
    DEPTH = "public_get_depth"
    DUPLICATE = ("-2010", "Duplicate order sent.")

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        return ccxt.binance(config)

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
    ) -> None:
        super().__init__(broker_id)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.currency = currency
        self.max_backoff_s = max_backoff_s
        self.max_rate_limit_retries = max_rate_limit_retries
        self.poll_interval_s = poll_interval_s
        self.log = log.bind(broker_id=broker_id)
        self.exchange = self._new_exchange(
            {
                "apiKey": api_key,
                "secret": api_secret,
                "enableRateLimit": True,
                "timeout": int(timeout_s * 1000),
            }
        )
        # ccxt logs every request's headers (X-MBX-APIKEY) and signed URL at DEBUG: its own logger, never below INFO
        self.exchange.logger = logging.getLogger("ordermesh.binance.ccxt")
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
        self._records: dict[str, _Record] = {}
        self._emitted: dict[str, BrokerOrder] = {}
        self.backoffs: list[float] = []  # seconds waited on 429/418, for metrics and tests
        self.used_weight: int | None = None  # X-MBX-USED-WEIGHT-1M of the last answer

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
        """Load the markets and adopt our open orders; Binance unreachable is not fatal (markets load on first
        use, an unknown client order id is looked up among the open orders)."""
        try:
            await self._call(self.exchange.load_markets)
            await self.reconcile()
        except BrokerConnectionError as exc:
            self.log.warning("Binance not reachable on connect; markets load on first use", error=exc.message)

    async def _ready(self) -> None:
        """Before an order: what connect could not do."""
        await self._markets()

    async def close(self) -> None:
        await self.exchange.close()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One ccxt call with our error mapping; 429/418 retried after Retry-After (nothing was processed)."""
        attempt = 0
        while True:
            try:
                with decimal.localcontext():  # ccxt's precision helpers change the Decimal context in place
                    result = await fn(*args, **kwargs)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                self._note_weight()
                attempt += 1
                if attempt > self.max_rate_limit_retries:
                    raise BrokerConnectionError("rate limited: retries exhausted", code="429") from exc
                wait = self._retry_after()
                self.backoffs.append(wait)
                self.log.warning("rate limited; backing off", seconds=wait, attempt=attempt)
                await asyncio.sleep(wait)
                continue
            except ccxt.BaseError as exc:
                self._note_weight()
                raise map_error(exc, self._last_body()) from exc
            self._note_weight()
            return result

    def _last_body(self) -> Any:
        """The last answer's JSON (ccxt keeps its text). With requests for other orders in flight it may be
        another answer's: it is used only when its ``msg`` is the exception's (``binance_error``). Retry-After and
        the weight header are read the same way (ccxt keeps only the last answer's headers)."""
        try:
            return json.loads(self.exchange.last_http_response or "null")
        except ValueError:
            return None

    def _retry_after(self) -> float:
        headers = self.exchange.last_response_headers or {}
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            wait = float(raw) if raw is not None else 1.0
        except ValueError:
            wait = 1.0
        return max(0.0, min(wait, self.max_backoff_s))

    def _note_weight(self) -> None:
        headers = self.exchange.last_response_headers or {}
        raw = next((v for k, v in headers.items() if k.lower() == "x-mbx-used-weight-1m"), None)
        if raw is not None and str(raw).isdigit():
            self.used_weight = int(raw)

    async def _markets(self) -> dict[str, Any]:
        if not self.exchange.markets:
            await self._call(self.exchange.load_markets)
        return self.exchange.markets

    async def _market(self, symbol: str) -> dict[str, Any]:
        """The ccxt market for ``BTC/USDT`` or Binance's ``BTCUSDT``."""
        markets = await self._markets()
        if symbol in markets:
            return markets[symbol]
        by_id = self.exchange.markets_by_id or {}
        if symbol in by_id:
            return by_id[symbol][0]
        raise SymbolNotFoundError(f"unknown symbol {symbol}", code="-1121")

    # ------------------------------------------------------------------------------------ reading orders

    def _apply(self, rec: _Record, info: dict[str, Any]) -> None:
        """Fold a raw Binance order answer (POST / GET / DELETE) into the record."""
        if info.get("orderId") is not None:
            rec.order_id = str(info["orderId"])
        if info.get("status"):
            rec.state = _STATES.get(info["status"], BrokerOrderState.NEW).value
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
                    fill_id=fid,
                    quantity=dec(f["qty"]),
                    price=dec(f["price"]),
                    commission=dec(f.get("commission")),
                    commission_asset=f.get("commissionAsset"),
                    liquidity=Liquidity.TAKER,
                    ts_ns=ts_ns,
                ),
            )

    def _known_qty(self, rec: _Record) -> Decimal:
        return sum((f.quantity for f in rec.fills.values()), ZERO)

    async def _complete_fills(self, rec: _Record) -> None:
        """Fetch the order's trades when Binance reports more executed than the fills we hold."""
        if rec.order_id and self._known_qty(rec) < rec.prior_filled + rec.leg_filled:
            trades = await self._call(self.exchange.fetch_my_trades, rec.market, None, None, {"orderId": rec.order_id})
            for t in trades:
                info = t["info"]
                fid = str(info["id"])
                rec.fills.setdefault(
                    fid,
                    BrokerFill(
                        fill_id=fid,
                        quantity=dec(info["qty"]),
                        price=dec(info["price"]),
                        commission=dec(info.get("commission")),
                        commission_asset=info.get("commissionAsset"),
                        liquidity=Liquidity.MAKER if info.get("isMaker", info.get("maker")) else Liquidity.TAKER,
                        ts_ns=int(info.get("time") or 0) * 1_000_000,
                    ),
                )

    async def _refresh(self, rec: _Record) -> BrokerOrder:
        """Query the order by client order id and complete its fills."""
        order = await self._call(self.exchange.fetch_order, "", rec.market, {"origClientOrderId": rec.venue_coid})
        self._apply(rec, order["info"])
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
        try:
            await self._call(self.exchange.fetch_time)
        except BrokerError:
            return False
        return True

    async def _account(self) -> dict[str, Any]:
        raw = await self._call(self.exchange.fetch_balance)
        return raw["info"]

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

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        market = await self._market(symbol)
        limit = next((n for n in (5, 10, 20, 50, 100, 500, 1000, 5000) if n >= depth), 5000)
        raw = await self._call(getattr(self.exchange, self.DEPTH), {"symbol": market["id"], "limit": limit})
        return OrderBook(
            symbol=symbol,
            bids=[BookLevel(dec(p), dec(q)) for p, q in raw["bids"][:depth]],
            asks=[BookLevel(dec(p), dec(q)) for p, q in raw["asks"][:depth]],
            ts_ns=time.time_ns(),
        )

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        coid = order.client_order_id
        rec = self._records.get(coid)
        if rec is not None:
            if rec.state in ("sending", "unknown"):
                found = await self._resolve(rec)
                if found is not None:
                    return found
                self.log.info("unknown outcome resolved: never placed; placing now", client_order_id=coid)
                return await self._send(rec)
            return await self._refresh(rec) if BrokerOrderState(rec.state) in _OPEN else rec.view()
        await self._ready()
        market = await self._market(order.symbol)
        if order.order_type is OrderType.MARKET:
            kind, tif = "market", None
        elif order.order_type is OrderType.LIMIT:
            if order.limit_price is None:
                raise OrderError("limit order without a limit price")
            if order.time_in_force not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
                raise OrderError(f"time in force {order.time_in_force.value} not supported by Binance spot")
            kind, tif = "limit", order.time_in_force.value
        else:
            raise OrderError(f"order type {order.order_type.value} not supported by the Binance spot adapter yet")
        rec = _Record(
            client_order_id=coid,
            symbol=order.symbol,
            market=market["symbol"],
            side=order.side,
            quantity=order.quantity,
            limit_price=order.limit_price,
            order_type=kind,
            time_in_force=tif,
            venue_coid=coid,
            reduce_only=order.reduce_only,
        )
        self._records[coid] = rec
        return await self._send(rec)

    async def _send(self, rec: _Record, quantity: Decimal | None = None) -> BrokerOrder:
        """Send the record's current leg (``quantity`` defaults to the whole order)."""
        qty = rec.quantity if quantity is None else quantity
        # ccxt precision: the amount truncated to the LOT_SIZE step, the price rounded to the tick (strings)
        amount = self.amount_to_precision(rec.market, qty)
        price = self.price_to_precision(rec.market, rec.limit_price) if rec.limit_price else None
        if Decimal(amount) != qty or (price is not None and Decimal(price) != rec.limit_price):
            self.log.warning(
                "order adjusted to the market's precision", client_order_id=rec.client_order_id, amount=amount,
                price=price,
            )  # fmt: skip
        params: dict[str, Any] = {"newClientOrderId": rec.venue_coid, **self._extra_params(rec)}
        if rec.time_in_force:
            params["timeInForce"] = rec.time_in_force
        rec.state = "sending"
        rec.legs += 1
        try:
            created = await self._call(
                self.exchange.create_order, rec.market, rec.order_type, rec.side.value.lower(), amount, price, params
            )
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
        self._apply(rec, created["info"])
        await self._complete_fills(rec)
        return rec.view()

    async def reconcile(self) -> list[BrokerOrder]:
        """Adopt the account's open orders that carry our client order ids (``om-...``; a cancel-replace leg
        ``om-....<n>`` belongs to ``om-...``) and that this adapter does not know, e.g. after a restart; their
        fills are then polled like any working order. Fills of earlier legs of a replaced order are not
        recovered. Returns the adopted orders."""
        raw = await self._call(self.exchange.fetch_open_orders)
        adopted = []
        for o in raw:
            info = o["info"]
            venue_coid = str(info.get("clientOrderId") or "")
            coid = venue_coid.split(".", 1)[0]
            if not coid.startswith("om-") or coid in self._records:
                continue
            legs = int(venue_coid.split(".", 1)[1]) + 1 if "." in venue_coid else 1
            rec = _Record(
                client_order_id=coid, symbol=o["symbol"], market=o["symbol"], side=Side(info["side"]),
                quantity=dec(info["origQty"]), limit_price=dec(info["price"]) or None, order_type=o["type"],
                time_in_force=info.get("timeInForce"), venue_coid=venue_coid, legs=legs,
                reduce_only=bool(info.get("reduceOnly", False)),
            )  # fmt: skip
            self._apply(rec, info)
            self._records[coid] = rec
            adopted.append(rec.view())
            self.log.info("open order adopted", client_order_id=coid, order_id=rec.order_id)
        return adopted

    def _extra_params(self, rec: _Record) -> dict[str, Any]:
        return {}

    def _record(self, client_order_id: str) -> _Record:
        rec = self._records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"unknown client order id {client_order_id}", code="-2013")
        return rec

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self._records.get(client_order_id)
        if rec is None:
            # not placed through this adapter (or before a restart): Binance needs the symbol, so look among the
            # open orders
            await self.reconcile()
            rec = self._records.get(client_order_id)
            if rec is None:
                raise OrderNotFoundError(f"unknown client order id {client_order_id}", code="-2013")
            return await self._refresh(rec)
        if rec.state in ("sending", "unknown"):
            found = await self._resolve(rec)
            if found is None:
                raise OrderNotFoundError(f"{client_order_id}: never reached Binance", code="-2013")
            return found
        if BrokerOrderState(rec.state) not in _OPEN:
            return rec.view()
        return await self._refresh(rec)

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self._record(client_order_id)
        if rec.state in ("sending", "unknown") and await self._resolve(rec) is None:
            raise OrderNotFoundError(f"{client_order_id}: never reached Binance", code="-2011")
        try:
            raw = await self._call(self.exchange.cancel_order, "", rec.market, {"origClientOrderId": rec.venue_coid})
        except OrderNotFoundError:
            await self._refresh(rec)  # filled or already closed meanwhile: the current view, then the error
            raise
        self._apply(rec, raw["info"])
        await self._complete_fills(rec)
        return rec.view()

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
            raise ModificationError("stop prices are not supported by the Binance spot adapter yet")
        if rec.order_type != "limit":
            raise ModificationError("only limit orders can be modified")
        if rec.state in ("sending", "unknown"):
            await self._resolve(rec)
        if rec.state in ("sending", "unknown") or BrokerOrderState(rec.state) not in _OPEN:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        try:
            raw = await self._call(self.exchange.cancel_order, "", rec.market, {"origClientOrderId": rec.venue_coid})
        except OrderNotFoundError as exc:
            await self._refresh(rec)
            raise ModificationError(f"order {client_order_id} is no longer working", code=exc.code) from exc
        self._apply(rec, raw["info"])
        await self._complete_fills(rec)
        new_qty = rec.quantity if quantity is None else quantity
        done = rec.prior_filled + rec.leg_filled
        if new_qty <= done:
            raise ModificationError(f"order {client_order_id} already has {done} filled; leg canceled")
        rec.prior_filled, rec.leg_filled = done, ZERO
        rec.quantity = new_qty
        if limit_price is not None:
            rec.limit_price = limit_price
        rec.venue_coid = f"{client_order_id}.{rec.legs}"
        try:
            return await self._send(rec, new_qty - done)
        except OrderError as exc:  # the old leg is canceled, its replacement refused: the order is canceled
            rec.state = BrokerOrderState.CANCELED.value
            raise ModificationError(f"replacement refused: {exc.message}", code=exc.code) from exc

    # ------------------------------------------------------------------------------------ polling

    async def poll_working(self) -> list[BrokerOrder]:
        """Refresh every working order; the views that changed since last reported."""
        changed = []
        for coid, rec in list(self._records.items()):
            if rec.state == "sending":
                continue
            try:
                if rec.state == "unknown":
                    view = await self._resolve(rec)
                    if view is None:
                        continue
                elif BrokerOrderState(rec.state) in _OPEN:
                    view = await self._refresh(rec)
                else:
                    view = rec.view()
            except BrokerError as exc:
                self.log.warning("order poll failed", client_order_id=coid, error=exc.message)
                continue
            if self._emitted.get(coid) != view:
                self._emitted[coid] = view
                changed.append(view)
        return changed

    async def order_updates(self) -> AsyncIterator[BrokerOrder]:
        while True:
            for view in await self.poll_working():
                yield view
            await asyncio.sleep(self.poll_interval_s)


# ------------------------------------------------------------------------------------------ USD-M futures


class _UsdmExchange(ccxt.binanceusdm):  # type: ignore[misc]
    """ccxt's binanceusdm with its error table chosen for a base-URL override too: ccxt picks the table by the
    real host (``https://fapi.binance.com/``), so against a local URL futures codes (-2019, -2022, -4116) would
    arrive as plain ExchangeError."""

    local_prefix: str | None = None

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:
        if self.local_prefix and url and url.startswith(self.local_prefix + "/fapi/"):
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return super().get_exceptions_by_url(url, exactOrBroad)  # type: ignore[no-any-return]


class BinanceFuturesAdapter(BinanceSpotAdapter):
    """Binance USD-M perpetual futures through ccxt's ``binanceusdm``: reduce-only orders, positions from
    ``positionRisk``, the wallet from ``account``, leverage / margin type / position mode from config (applied on
    connect), modify as an amend (``PUT /fapi/v1/order``). Fills come from ``userTrades`` (futures order answers
    carry no ``fills[]``), commissions in the margin asset."""

    MARKET_TYPE = "linear"
    DEFAULT_TYPE = "swap"
    DEPTH = "fapiPublicGetDepth"
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
        self.hedge_mode = hedge_mode  # False = one-way (positionSide BOTH); None = leave as it is
        self.settings_applied = False

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        ex = _UsdmExchange(config)
        ex.local_prefix = self.base_url
        return ex

    def _extra_params(self, rec: _Record) -> dict[str, Any]:
        return {"reduceOnly": True} if rec.reduce_only else {}

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

    async def _unchanged_ok(self, fn: Callable[..., Awaitable[Any]], *args: Any, codes: tuple[str, ...]) -> None:
        try:
            await self._call(fn, *args)
        except BrokerError as exc:
            if exc.code not in codes:  # -4046 / -4059: "No need to change ..." is not an error
                raise

    async def apply_settings(self) -> None:
        """Position mode, then margin type and leverage per configured symbol."""
        if self.hedge_mode is not None:
            await self._unchanged_ok(self.exchange.set_position_mode, self.hedge_mode, codes=("-4059",))
        for symbol in sorted(self.leverage):  # margin type and leverage are per symbol: the configured ones
            market = await self._market(symbol)
            if self.margin_type:
                await self._unchanged_ok(
                    self.exchange.set_margin_mode, self.margin_type, market["symbol"], codes=("-4046",)
                )
            await self._call(self.exchange.set_leverage, self.leverage[symbol], market["symbol"])
        self.settings_applied = True

    async def get_balance(self) -> Balance:
        info = await self._call(self.exchange.fapiPrivateV3GetAccount)
        return Balance(
            currency=self.currency,
            balance=dec(info["totalWalletBalance"]),
            equity=dec(info["totalMarginBalance"]),
            free_margin=dec(info["availableBalance"]),
            margin_used=dec(info["totalInitialMargin"]),
        )

    async def get_positions(self) -> list[BrokerPosition]:
        rows = await self._call(self.exchange.fapiPrivateV3GetPositionRisk)
        await self._markets()
        by_id = self.exchange.markets_by_id or {}
        out = []
        for row in rows:
            amount = dec(row["positionAmt"])
            if amount == 0:
                continue
            found = by_id.get(row["symbol"])
            side = row.get("positionSide", "BOTH")
            out.append(
                BrokerPosition(
                    symbol=found[0]["symbol"] if found else row["symbol"],
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
        if stop_price is not None or rec.order_type != "limit":
            raise ModificationError("only the quantity and price of limit orders can be amended")
        if rec.state in ("sending", "unknown"):
            await self._resolve(rec)
        if rec.state in ("sending", "unknown") or BrokerOrderState(rec.state) not in _OPEN:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        qty = rec.quantity if quantity is None else quantity
        price = rec.limit_price if limit_price is None else limit_price
        assert price is not None
        request = {
            "symbol": self.exchange.market(rec.market)["id"],
            "origClientOrderId": rec.venue_coid,
            "side": rec.side.value,
            "quantity": self.amount_to_precision(rec.market, qty),
            "price": self.price_to_precision(rec.market, price),
        }
        try:
            info = await self._call(self.exchange.fapiPrivatePutOrder, request)
        except (OrderNotFoundError, OrderError) as exc:
            raise ModificationError(exc.message, code=exc.code) from exc
        rec.quantity, rec.limit_price = dec(info["origQty"]), dec(info["price"])
        self._apply(rec, info)
        await self._complete_fills(rec)
        return rec.view()
