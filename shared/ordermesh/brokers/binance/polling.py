"""Following orders at Binance (:class:`Polling`): the reconciliation on start and after every reconnection
(open orders and recent trades, orders of ours adopted), orders resumed after a restart, and the poll of working
orders and of the account's trades.

Orders the gateway knew as working before a restart come back through :meth:`Polling.resume`, and a redelivered
command is resumed before it is placed, so an order that already finished at Binance (whose client order id Binance
would accept again) is found instead of placed twice.

Fills come from ``fills[]`` of spot FULL answers and from the account's trades per symbol (``myTrades`` /
``userTrades`` from a trade-id cursor), fetched when the symbol's open orders show a change, and from the order's own
trades while they do not cover what it executed (``records``); they are kept by trade id (``fill_id`` = trade id),
so each arrives once. While Binance refuses the API key the polls wait (``access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ordermesh.brokers.binance.endpoints import ALGO_OPEN, ALGO_OPEN_ALL
from ordermesh.brokers.binance.records import ALGO_WAITING, Records, TrackedOrder, dec, order_type_of
from ordermesh.brokers.model import BrokerError, BrokerOrder, SymbolNotFoundError
from ordermesh.contract.wire import PlaceOrder, Side, TimeInForce


class Polling(Records):
    """Reconciliation, resumed orders and the poll that reports what changed."""

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

    def _adopt(self, info: dict[str, Any], *, reported: bool = False) -> TrackedOrder | None:
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
        rec = held or TrackedOrder(
            client_order_id=coid, symbol=market, market=market, side=Side(info["side"]),
            quantity=dec(info["quantity" if algo else "origQty"]), limit_price=dec(info.get("price")) or None,
            order_type=order_type_of(binance_type), stop_price=dec(info.get("triggerPrice" if algo else "stopPrice"))
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

    async def _read_trades(self, market: str) -> list[TrackedOrder]:
        """The account's new trades in ``market`` (from the cursor, or the lookback on first read), each added to
        its order; orders of ours not held yet are looked up and adopted. Returns the adopted records."""
        adopted: list[TrackedOrder] = []
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

    async def _catch_up(self) -> None:
        if self._stale:
            async with self._reconcile_lock:
                if self._stale:
                    await self.reconcile()

    async def poll_working(self) -> list[BrokerOrder]:
        """One poll: per symbol with working orders, its open orders (cheap), then the account's trades when
        something changed; orders gone from the open list are queried once for their final state. Returns the
        views that changed since last reported. Nothing while Binance refuses the key (the heartbeat asks)."""
        if self.key_error is not None:
            return []
        try:
            await self._catch_up()
        except BrokerError as exc:
            self.log.warning("reconciliation failed; retried by the next poll", error=exc.message)
        except Exception:  # retried by the next poll too: the reconciliation is still due
            self._unreadable("reconcile")
        by_market: dict[str, list[TrackedOrder]] = {}
        for rec in list(self._records.values()):
            unprotected = not rec.protected and (rec.stop_loss is not None or rec.take_profit is not None)
            if rec.pending or rec.working or unprotected or rec.lag_since or rec.missing_legs():
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

    async def _poll_market(self, market: str, recs: list[TrackedOrder]) -> None:
        for rec in recs:
            if rec.pending:
                await self._resolve(rec)
        waiting = [rec for rec in recs if rec.waiting]
        if waiting:  # algo orders not triggered yet: one request for the symbol's, the others looked up
            snapshot = await self._api(ALGO_OPEN, {"symbol": self._market_id(market)})
            open_algos = {str(a.get("clientAlgoId")): a for a in snapshot}
            for rec in waiting:
                info = open_algos.get(rec.venue_coid)
                if info is None or info.get("algoStatus") not in ALGO_WAITING:
                    await self._refresh(rec, attempts=1)  # triggered (then followed as its order), canceled, ...
        working = [rec for rec in recs if rec.working and not rec.waiting]
        gone: list[TrackedOrder] = []
        if working:
            snapshot = await self._api(self.EP.open_orders, {"symbol": self._market_id(market)})
            open_by_coid = {str(o.get("clientOrderId")): o for o in snapshot}
            open_by_id = {str(o.get("orderId")): o for o in snapshot}
            changed = market not in self._cursor
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
                await self._refresh(rec, attempts=1)  # its final state (filled, canceled, expired) and its trades
        now, read = time.monotonic(), {id(rec) for rec in gone}
        for rec in recs:  # executed more than its fills: its trades, until listed (``records``)
            if id(rec) not in read and not rec.pending and rec.missing_legs() and now >= rec.lag_next:
                await self._complete_fills(rec, attempts=1)
        for rec in recs:
            if not rec.working and not rec.pending:
                await self._protect(rec)
                await self._one_cancels_other(rec)

    def _prune(self) -> None:
        """Finished orders reported long ago leave memory (their ids stay known to Binance: a command delivered
        again is resumed, i.e. looked up, before it is placed)."""
        horizon = time.monotonic() - self.reconcile_lookback_s
        for coid, rec in list(self._records.items()):
            reported = self._emitted.get(coid) == rec.view() and not rec.missing_legs()  # never with fills missing
            if rec.closed_at and rec.closed_at < horizon and reported:
                del self._records[coid]
                self._emitted.pop(coid, None)
                self._by_order_id.pop((rec.market, rec.order_id), None)

    async def order_updates(self) -> AsyncIterator[BrokerOrder]:
        while True:
            for view in await self.poll_working():
                yield view
            await asyncio.sleep(self.poll_interval_s)
