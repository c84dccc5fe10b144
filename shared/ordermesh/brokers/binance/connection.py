"""The connection to Binance the adapters share (:class:`BinanceConnection`): the ccxt async client and its
configuration, every request through it, connection health (heartbeat) and the markets; the API key's standing and
the clock offset are ``access``'s.

The ccxt client is configured so that ``load_markets`` is one ``exchangeInfo`` call (``fetchCurrencies`` and
``fetchMargins`` off, ``fetchMarkets.types`` the one market type). A base-URL override (a local server, a proxy)
replaces the host of EVERY entry of ``urls['api']`` and keeps its path; the testnet uses ccxt's sandbox mode and is
never combined with an override (``set_sandbox_mode`` replaces the whole dict). ccxt signs and sends; its errors
are mapped by ``errors``.

Every request is counted against a shared request-weight budget (``WeightBudget``) fed by ``X-MBX-USED-WEIGHT-1M``;
429 / 418 answers wait ``Retry-After``. Quantities and prices pass through ccxt's ``amount_to_precision``
(truncation to the LOT_SIZE step) and ``price_to_precision`` (rounding to the tick) as strings; what ccxt refuses
there (a quantity below the step) is an ``OrderError`` like any refusal, before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import decimal
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import structlog

from ordermesh.brokers.binance.access import Access
from ordermesh.brokers.binance.endpoints import Endpoint, Endpoints
from ordermesh.brokers.binance.errors import ClockSkewError, KeyRejectedError, RateLimitedError, map_error
from ordermesh.brokers.binance.requests import WeightBudget
from ordermesh.brokers.client import BrokerClient
from ordermesh.brokers.model import BrokerConnectionError, BrokerError, BrokerOrder, OrderError, SymbolNotFoundError
from ordermesh.platform import metrics

if TYPE_CHECKING:
    from ordermesh.brokers.binance.records import TrackedOrder

log = structlog.get_logger("binance")

T = TypeVar("T")


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


class SpotExchange(_Observed, ccxt.binance):  # type: ignore[misc]
    pass


class UsdmExchange(_Observed, ccxt.binanceusdm):  # type: ignore[misc]
    """ccxt's binanceusdm with its error table chosen for a base-URL override too: ccxt picks the table by the
    real host (``https://fapi.binance.com/``), so against a local URL futures codes (-2019, -2022, -4116) would
    arrive as plain ExchangeError."""

    local_prefix: str | None = None

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:
        if self.local_prefix and url and url.startswith(self.local_prefix + "/fapi/"):
            return self.safe_dict(self.safe_dict(self.exceptions, "linear", {}), exactOrBroad, {})
        return super().get_exceptions_by_url(url, exactOrBroad)  # type: ignore[no-any-return]


class BinanceConnection(Access, BrokerClient):  # type: ignore[misc]
    """The ccxt client of one Binance account and every request to it; the state of the orders followed through it
    (kept by the order concerns: ``records``, ``orders``, ``protection``, ``polling``) is created here too, with the
    client. The class constants are the market's: :class:`BinanceSpotAdapter`'s and
    :class:`BinanceFuturesAdapter`'s."""

    MARKET_TYPE: str  # ccxt's fetchMarkets type
    DEFAULT_TYPE: str
    API: str  # the weight budget's pool
    DEFAULT_WEIGHT_LIMIT: int
    FUTURES: bool
    EP: Endpoints

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        raise NotImplementedError

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
        clock_offset_warn_ms: int = 1000,
        fill_retries: int = 3,
        fill_retry_s: float = 0.1,
        fill_lag_warn_s: float = 10.0,
    ) -> None:
        super().__init__(broker_id)
        self._init_access(clock_offset_warn_ms)
        self.fill_retries = fill_retries  # reads of an order's trades while placing / querying it, fills missing
        self.fill_retry_s = fill_retry_s  # between those reads
        self.fill_lag_warn_s = fill_lag_warn_s  # fills missing this long: a warning, and the reads slow down
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
        self.exchange.logger = logging.getLogger("ordermesh.brokers.binance.ccxt")
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
        self._records: dict[str, TrackedOrder] = {}
        self._by_order_id: dict[tuple[str, str], TrackedOrder] = {}  # (market, Binance orderId) -> record
        self._foreign: set[tuple[str, str]] = set()  # orders in the account's trades that are not ours
        self._cursor: dict[str, int] = {}  # market -> the next trade id to read
        self._emitted: dict[str, BrokerOrder] = {}
        self.backoffs: list[float] = []  # seconds waited on 429/418, for metrics and tests
        self.used_weight: int | None = None  # X-MBX-USED-WEIGHT-1M of the last answer
        self.reachable = False  # Binance answers (``connected`` also needs the key accepted: ``access``)
        self._was_connected = False
        self._stale = True  # reconciliation due: on start, and after every reconnection
        self._reconcile_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def override_urls(api: dict[str, Any], base_url: str) -> dict[str, Any]:
        """Every ``urls['api']`` entry pointed at ``base_url``, keeping each entry's path."""
        out: dict[str, Any] = {}
        for key, value in api.items():
            if isinstance(value, str):
                out[key] = base_url + urlsplit(value).path
            elif isinstance(value, dict):
                out[key] = BinanceConnection.override_urls(value, base_url)
            else:
                out[key] = value
        return out

    def amount_to_precision(self, market: str, qty: Decimal) -> str:
        """ccxt's amount precision (truncated to the step), in a local Decimal context: ccxt's
        ``decimal_to_precision`` changes the current context's precision and traps in place. A quantity the step
        truncates to nothing is refused as Binance's LOT_SIZE filter refuses it ("Filter failure: LOT_SIZE"),
        before anything is sent."""
        try:
            with decimal.localcontext():
                return str(self.exchange.amount_to_precision(market, str(qty)))
        except ccxt.InvalidOrder as exc:  # "amount of ... must be greater than minimum amount precision of ..."
            raise OrderError(
                f"Filter failure: LOT_SIZE (quantity {qty} is below the step {self._step(market)} of {market}; "
                "not sent)"
            ) from exc
        except ccxt.BaseError as exc:
            raise map_error(exc, futures=self.FUTURES) from exc

    def price_to_precision(self, market: str, price: Decimal) -> str:
        """ccxt's price precision (rounded to the tick), in a local Decimal context."""
        try:
            with decimal.localcontext():
                return str(self.exchange.price_to_precision(market, str(price)))
        except ccxt.BaseError as exc:
            raise map_error(exc, futures=self.FUTURES) from exc

    def _step(self, market: str) -> str:
        """The market's LOT_SIZE step as exchangeInfo states it (ccxt's precision when it does not)."""
        info = self._ccxt_market(market)
        for f in info.get("info", {}).get("filters", []):
            if f.get("filterType") == "LOT_SIZE" and f.get("stepSize"):
                return f"{Decimal(str(f['stepSize'])).normalize():f}"
        return str(info.get("precision", {}).get("amount"))

    def _ccxt_market(self, market: str) -> dict[str, Any]:
        """ccxt's market (loaded): an unknown one is our SymbolNotFoundError."""
        try:
            return self.exchange.market(market)  # type: ignore[no-any-return]
        except ccxt.BaseError as exc:
            raise map_error(exc, futures=self.FUTURES) from exc

    async def connect(self) -> None:
        """Measure Binance's clock, load the markets and reconcile (open orders, recent trades); start the
        heartbeat. Binance unreachable, or refusing the key, is not fatal: the clock is measured by the next
        heartbeat, markets load on first use, reconciliation runs once Binance answers and accepts the key."""
        await self._sync_clock()
        try:
            await self._markets()
            await self._catch_up()
        except BrokerConnectionError as exc:
            self.log.warning("Binance not reachable on connect; reconciling once it answers", error=exc.message)
        except KeyRejectedError:
            pass  # said once by the key's state; the heartbeat asks again
        except BrokerError as exc:
            self.log.warning("reconciliation on connect failed; retried by the next poll", error=exc.message)
        if self.heartbeat_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name=f"{self.broker_id}-heartbeat"))

    async def _ready(self) -> None:
        """Before an order: what connect could not do, and a key Binance accepts."""
        if self.clock_offset_ms is None:
            await self._sync_clock()
        await self._markets()
        await self._key_usable()

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
                                params or {}, signed="private" in ep.method.lower())  # fmt: skip

    async def _call(
        self, endpoint: str, weight: int, fn: Callable[..., Awaitable[T]], *args: Any, signed: bool = True
    ) -> T:
        """One request: the weight budget first, our error mapping (``errors``), latency by endpoint. Rate limits
        (429 / 418, -1003 / -1015) are retried after Retry-After, and a signed request refused for its timestamp
        once after the clock is measured again: nothing was processed. A request that got no answer marks Binance
        unreachable, an answer reachable; a signed one refused for the key marks the key refused, answered
        accepted (``access``)."""
        attempt = 0
        resynced = False
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
            except ccxt.BaseError as exc:
                self._answered(endpoint, weight, answer, started)
                err = map_error(exc, answer.json(), answer.status, futures=self.FUTURES)
                if isinstance(err, RateLimitedError):
                    metrics.BROKER_RATE_LIMITED.labels(self.broker_id).inc()
                    attempt += 1
                    if attempt > self.max_rate_limit_retries:
                        raise BrokerConnectionError("rate limited: retries exhausted", code=err.code or "429") from exc
                    wait = self._retry_after(answer)
                    self.backoffs.append(wait)
                    self.log.warning("rate limited; backing off", seconds=wait, attempt=attempt, endpoint=endpoint)
                    await asyncio.sleep(wait)
                    continue
                if isinstance(err, ClockSkewError) and signed and not resynced:
                    resynced = True
                    self.log.warning("signed request refused for its timestamp; measuring Binance's clock again",
                                     endpoint=endpoint, offset_ms=self.clock_offset_ms)  # fmt: skip
                    if await self._sync_clock():
                        continue
                if isinstance(err, KeyRejectedError) and signed:
                    self._key_refused(err)
                elif isinstance(err, BrokerConnectionError) and answer.status is None:
                    self._set_reachable(False)
                raise err from exc
            finally:
                _ANSWER.reset(token)
            self._answered(endpoint, weight, answer, started)
            if signed:
                self._key_accepted()
            return result

    def _answered(self, endpoint: str, weight: int, answer: _Answer, started: float) -> None:
        metrics.BROKER_ENDPOINT_SECONDS.labels(self.broker_id, endpoint).observe(time.perf_counter() - started)
        raw = answer.header("x-mbx-used-weight-1m")
        used = int(raw) if raw is not None and raw.isdigit() else None
        self.budget.release(weight, used)
        if used is not None:
            self.used_weight = used
            metrics.BROKER_WEIGHT_USED.labels(self.broker_id).set(used)
            metrics.BROKER_RATE_LIMIT_USED.labels(self.broker_id).set(used / self.budget.limit)
        if answer.status is not None:
            self._set_reachable(True)

    def _retry_after(self, answer: _Answer) -> float:
        raw = answer.header("retry-after")
        try:
            wait = float(raw) if raw is not None else 1.0
        except ValueError:
            wait = 1.0
        return max(0.0, min(wait, self.max_backoff_s))

    def _set_reachable(self, up: bool) -> None:
        if up == self.reachable:
            return
        self.reachable = up
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
        """A cheap round trip (server time, weight 1) that measures the clock offset; while the key is refused, a
        signed read that asks again; after a reconnection, the reconciliation. True when Binance answered and
        accepts the key."""
        try:
            await self._measure_clock()
            metrics.BROKER_LAST_HEARTBEAT.labels(self.broker_id).set(time.time())
            if self.key_error is not None:
                await self._api(self.EP.account)  # answered: the key is accepted again
            await self._catch_up()
        except BrokerError as exc:
            self.log.debug("heartbeat failed", error=exc.message)
            return False
        except (KeyError, TypeError, ValueError):
            self._unreadable("heartbeat")
            return False
        return True

    async def validate_connection(self) -> bool:
        return await self.heartbeat()

    async def _markets(self) -> dict[str, Any]:
        if not self.exchange.markets:
            await self._call(self.EP.exchange_info.name, self.EP.exchange_info.weight, self.exchange.load_markets,
                             signed=False)  # fmt: skip
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
        return str(self._ccxt_market(market)["id"])

    def _market_name(self, market_id: str) -> str:
        found = (self.exchange.markets_by_id or {}).get(market_id)
        return str(found[0]["symbol"]) if found else market_id
