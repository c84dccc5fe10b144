"""Binance spot: :class:`BinanceSpotAdapter`, the ``BrokerClient`` of ``type: binance_spot`` brokers
(docs/architecture.md §17). The class puts together the connection (``connection``) and the order concerns
(``orders``, ``protection``, ``polling``); here are the spot constants, the account (balance, positions) and the
market data (order book, instruments, quotes), where :class:`BinanceFuturesAdapter` overrides what differs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from ordermesh.brokers.binance.connection import SpotExchange
from ordermesh.brokers.binance.endpoints import SPOT_API
from ordermesh.brokers.binance.orders import Orders
from ordermesh.brokers.binance.polling import Polling
from ordermesh.brokers.binance.protection import Protection
from ordermesh.brokers.binance.records import ZERO, dec
from ordermesh.brokers.client import Capabilities
from ordermesh.brokers.model import Balance, BookLevel, BrokerError, BrokerPosition, OrderBook, SymbolNotFoundError
from ordermesh.contract.wire import Quote
from ordermesh.sizing.instruments import InstrumentOverride


class BinanceSpotAdapter(Polling, Orders, Protection):
    """A gateway's connection to one Binance spot account (or a Binance-compatible server)."""

    MARKET_TYPE = "spot"  # ccxt's fetchMarkets type: load_markets is one exchangeInfo call
    DEFAULT_TYPE = "spot"
    API = "api"  # the weight budget's pool: spot and futures are limited separately
    DEFAULT_WEIGHT_LIMIT = 6000
    FUTURES = False
    EP = SPOT_API
    capabilities = Capabilities(places_protective_orders=True, streams_quotes=True, reports_instruments=True)

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        return SpotExchange(config)

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
