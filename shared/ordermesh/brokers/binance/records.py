"""What the adapters know of each order at Binance (:class:`TrackedOrder`, by client order id) and how Binance's
answers fold into it (:class:`Records`): order answers (POST / GET / DELETE / openOrders), algo order answers, the
account's trades, an order queried again.

Money is ``Decimal`` read from Binance's raw JSON strings (:func:`dec`), never from ccxt's floats; what the venue
accepted (``origQty``, ``price``) is what we report. Fills are kept by trade id (``fill_id`` = trade id), so each
arrives once.

A fill is reported when Binance's executed quantity says it happened: each leg's ``executedQty`` is kept
(``TrackedOrder.executed``) and its trades are read (``GET myTrades`` / ``userTrades`` by ``orderId``) until its fills
cover it. The account's trade list may lag the order's own answer; until it catches up, the order is reported by
the fills known and as still working (NEW / PARTIALLY_FILLED), never as finished without its fills, so nothing
upstream forgets it: ``fill_retries`` reads ``fill_retry_s`` apart while placing or querying it, then one per poll
(slowing down, at most every 30 s, once ``fill_lag_warn_s`` has passed, with one warning). Reads that came back short
are ``ordermesh_broker_fill_lag_checks_total``, the orders waiting ``ordermesh_broker_orders_missing_fills``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ordermesh.brokers.binance.connection import BinanceConnection
from ordermesh.brokers.binance.endpoints import ALGO_GET
from ordermesh.brokers.binance.requests import ALGO_TYPES, FUTURES_TYPES
from ordermesh.brokers.model import BrokerFill, BrokerOrder, BrokerOrderState, OrderNotFoundError
from ordermesh.brokers.reports import attached_parent
from ordermesh.contract.wire import Liquidity, OrderType, PlaceOrder, Side, TimeInForce
from ordermesh.platform import metrics

ZERO = Decimal(0)

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
ALGO_WAITING = ("NEW", "TRIGGERING")
_PENDING = ("sending", "unknown")


def dec(value: Any) -> Decimal:
    """A Decimal from Binance's JSON string (``"0.10000000"`` -> ``0.1``); never through float."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        raise TypeError(f"refusing a float for money: {value!r}")
    d = Decimal(str(value))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


@dataclass
class TrackedOrder:
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
    executed: dict[str, Decimal] = field(default_factory=dict)  # Binance orderId of each leg -> its executedQty
    fill_orders: dict[str, str] = field(default_factory=dict)  # fill id -> the Binance orderId it belongs to
    lag_since: float = 0.0  # monotonic time its fills were first found missing (0: none missing)
    lag_next: float = 0.0  # monotonic time its trades are read again by the poll
    lag_interval: float = 0.0
    lag_warned: bool = False

    def missing_legs(self) -> list[str]:
        """The Binance orderIds whose executed quantity the fills we hold do not cover yet."""
        have: dict[str, Decimal] = {}
        for fid, fill in self.fills.items():
            oid = self.fill_orders.get(fid)
            if oid is not None:
                have[oid] = have.get(oid, ZERO) + fill.quantity
        return [oid for oid, executed in self.executed.items() if have.get(oid, ZERO) < executed]

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
        filled = self.prior_filled + self.leg_filled
        if not self.pending and self.missing_legs():
            # executed more than the fills we hold (the trade list lags): reported by the fills known, as working,
            # until the rest is read; a finished state without its fills would let the order be forgotten
            filled = sum((f.quantity for f in fills), ZERO)
            state = BrokerOrderState.PARTIALLY_FILLED if filled else BrokerOrderState.NEW
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.order_id or self.algo_id,  # an algo order: its algoId until it triggers
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            state=state,
            filled_qty=filled,
            limit_price=self.limit_price,
            fills=fills,
            parent_client_order_id=self.parent,
        )


def order_type_of(binance_type: str) -> OrderType:
    """Our order type for a Binance one (adopted orders)."""
    if binance_type in ("STOP_LOSS", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TAKE_PROFIT"):
        return OrderType.STOP if binance_type != "TAKE_PROFIT" else OrderType.STOP_LIMIT
    if binance_type in ("STOP_LOSS_LIMIT", "STOP", "TAKE_PROFIT_LIMIT"):
        return OrderType.STOP_LIMIT
    return OrderType.MARKET if binance_type == "MARKET" else OrderType.LIMIT


class Records(BinanceConnection):
    """Reading orders: Binance's answers folded into the records, an order queried again, its fills completed."""

    def _index(self, rec: TrackedOrder) -> None:
        if rec.order_id:
            self._by_order_id[(rec.market, rec.order_id)] = rec

    def _apply(self, rec: TrackedOrder, info: dict[str, Any]) -> None:
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
            if rec.order_id:
                rec.executed[rec.order_id] = rec.leg_filled
        if info.get("origQty") is not None and rec.legs <= 1:
            rec.quantity = dec(info["origQty"])
        ts_ns = int(info.get("transactTime") or info.get("updateTime") or 0) * 1_000_000
        for f in info.get("fills") or []:
            fid = str(f["tradeId"])
            rec.fill_orders[fid] = rec.order_id
            rec.fills.setdefault(
                fid,
                BrokerFill(
                    fill_id=fid, quantity=dec(f["qty"]), price=dec(f["price"]), commission=dec(f.get("commission")),
                    commission_asset=f.get("commissionAsset"), liquidity=Liquidity.TAKER, ts_ns=ts_ns,
                    position_id=self._fill_position(info),
                ),
            )  # fmt: skip

    def _apply_algo(self, rec: TrackedOrder, info: dict[str, Any]) -> None:
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

    def _add_trade(self, rec: TrackedOrder, info: dict[str, Any]) -> None:
        """One of the account's trades (``myTrades`` / ``userTrades``), kept by trade id."""
        fid = str(info["id"])
        rec.fill_orders[fid] = str(info["orderId"])
        rec.fills.setdefault(
            fid,
            BrokerFill(
                fill_id=fid, quantity=dec(info["qty"]), price=dec(info["price"]),
                commission=dec(info.get("commission")), commission_asset=info.get("commissionAsset"),
                liquidity=Liquidity.MAKER if info.get("isMaker", info.get("maker")) else Liquidity.TAKER,
                ts_ns=int(info.get("time") or 0) * 1_000_000, position_id=self._fill_position(info),
            ),
        )  # fmt: skip

    async def _complete_fills(self, rec: TrackedOrder, *, attempts: int | None = None) -> None:
        """Read the trades of each leg Binance says executed more than the fills we hold (a spot answer without
        fills, a futures answer, an order that filled while resting): up to ``attempts`` rounds (default
        ``fill_retries``) ``fill_retry_s`` apart, since the account's trade list may lag the order. Whatever is
        still missing is read again by the poll (module docstring)."""
        for attempt in range(max(1, self.fill_retries if attempts is None else attempts)):
            missing = rec.missing_legs()
            if not missing:
                break
            if attempt:
                await asyncio.sleep(self.fill_retry_s)
            for oid in missing:
                for t in await self._api(self.EP.trades_of_order, {"symbol": self._market_id(rec.market),
                                                                   "orderId": oid}):  # fmt: skip
                    self._add_trade(rec, t)
                if oid in rec.missing_legs():
                    metrics.BROKER_FILL_LAG_CHECKS.labels(self.broker_id).inc()
        self._note_lag(rec)

    def _note_lag(self, rec: TrackedOrder) -> None:
        """When the order's fills went missing, whether to warn (once, past ``fill_lag_warn_s``, after which its
        reads slow down) and when the poll reads them next; the gauge of orders waiting."""
        now = time.monotonic()
        if rec.missing_legs():
            rec.lag_since = rec.lag_since or now
            if now - rec.lag_since >= self.fill_lag_warn_s:
                if not rec.lag_warned:
                    self.log.warning("trades of an executed order not listed yet; still reading them",
                                     client_order_id=rec.client_order_id, order_ids=rec.missing_legs(),
                                     seconds=round(now - rec.lag_since, 3))  # fmt: skip
                    rec.lag_warned = True
                rec.lag_interval = min(30.0, max(self.poll_interval_s, rec.lag_interval * 2))
                rec.lag_next = now + rec.lag_interval
        elif rec.lag_since:
            self.log.info("trades of the order listed after a lag", client_order_id=rec.client_order_id,
                          seconds=round(now - rec.lag_since, 3))  # fmt: skip
            rec.lag_since = rec.lag_next = rec.lag_interval = 0.0
            rec.lag_warned = False
        waiting = sum(1 for r in self._records.values() if r.lag_since)
        metrics.BROKER_ORDERS_MISSING_FILLS.labels(self.broker_id).set(waiting)

    async def _refresh(self, rec: TrackedOrder, *, attempts: int | None = None) -> BrokerOrder:
        """Query the order by client order id and complete its fills (``attempts``: :meth:`_complete_fills`). An
        algo order is queried by its ``clientAlgoId`` until it triggers, then the order it placed by
        ``orderId``."""
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
        await self._complete_fills(rec, attempts=attempts)
        return rec.view()

    async def _resolve(self, rec: TrackedOrder) -> BrokerOrder | None:
        """An order whose placement outcome is unknown: the order if Binance has it, None if it never arrived."""
        try:
            view = await self._refresh(rec)
        except OrderNotFoundError:
            return None
        self.log.info("unknown outcome resolved: the order exists", client_order_id=rec.client_order_id)
        return view

    def _new_record(self, order: PlaceOrder, market: str, *, state: str = "sending") -> TrackedOrder:
        parent = attached_parent(order)  # a protective order remembered by the gateway, resumed after a restart
        return TrackedOrder(
            client_order_id=order.client_order_id, symbol=order.symbol, market=market, side=order.side,
            quantity=order.quantity, limit_price=order.limit_price, order_type=order.order_type,
            time_in_force=order.time_in_force, venue_coid=order.client_order_id, stop_price=order.stop_price,
            reduce_only=order.reduce_only, position_id=order.position_id, stop_loss=order.stop_loss,
            take_profit=order.take_profit, state=state, parent=parent, protected=parent is not None,
            algo=self.FUTURES and (parent is not None or FUTURES_TYPES[order.order_type] in ALGO_TYPES), command=order,
        )  # fmt: skip

    def _record(self, client_order_id: str) -> TrackedOrder:
        rec = self._records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"unknown client order id {client_order_id}", code="-2013")
        return rec
