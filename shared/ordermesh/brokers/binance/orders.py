"""Placing, querying, canceling and modifying orders (:class:`Orders`), idempotent on the client order id.

Orders go through ccxt's implicit REST methods (``privatePostOrder``, ``fapiPrivatePostOrder``, ...) with the
parameters built by ``ordermesh.brokers.binance.requests``, so what is sent is exactly Binance's documented
request. USD-M conditional orders (stops, attached stop-loss / take-profit) are algo orders
(``fapiPrivatePostAlgoOrder``, ``clientAlgoId``): followed in the Algo Service until they trigger, then as the order
the trigger placed (``actualOrderId``).

Idempotency and unknown outcomes: every order is kept by client order id (sent as ``newClientOrderId``). A
request that timed out or lost its connection leaves the order ``unknown`` (BrokerConnectionError); the next
place / status / cancel for it first queries the order by client order id and places only when Binance answers
"Order does not exist.". A duplicate rejection (futures -4116; spot -2010, whose meanings are told apart only by
the message, so every spot -2010 is checked) is looked up by client order id, and the order found is the answer.
What cannot be sent (a quantity below the step, a missing price) is refused before anything is sent and leaves
nothing to follow.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ordermesh.brokers.binance.endpoints import ALGO_CANCEL, ALGO_NEW
from ordermesh.brokers.binance.errors import DuplicateOrderError
from ordermesh.brokers.binance.records import ZERO, Records, TrackedOrder
from ordermesh.brokers.binance.requests import OrderTerms, order_request
from ordermesh.brokers.model import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerOrder,
    BrokerOrderState,
    ModificationError,
    OrderError,
    OrderNotFoundError,
)
from ordermesh.contract.wire import OrderType, PlaceOrder


class Orders(Records):
    """Place, status, cancel and modify (spot: cancel-replace) of the orders placed through the adapter."""

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        coid = order.client_order_id
        rec = self._records.get(coid)
        if rec is not None:
            if rec.pending:
                try:
                    found = await self._resolve(rec)
                except AuthenticationError as exc:  # not looked up: its outcome stays unknown, never a rejection
                    raise BrokerConnectionError(f"outcome unknown: {exc.message}", code=exc.code) from exc
                if found is not None:
                    return found
                self.log.info("unknown outcome resolved: never placed; placing now", client_order_id=coid)
                return await self._send(rec)
            if rec.working:
                return await self._refresh(rec)
            await self._complete_fills(rec)
            return rec.view()
        if order.order_type is OrderType.LIMIT and order.limit_price is None:
            raise OrderError("limit order without a limit price")
        await self._ready()
        market = await self._market(order.symbol)
        rec = self._new_record(order, market["symbol"])
        self._terms(rec, rec.quantity)  # refuses what Binance cannot take before anything is sent
        self._records[coid] = rec
        return await self._send(rec)

    def _terms(self, rec: TrackedOrder, qty: Decimal, limit_price: Decimal | None = None) -> dict[str, str]:
        """The request for the record's current leg of ``qty`` (at ``limit_price``, else the record's), at the
        market's precision. Raises OrderError for what Binance cannot take."""
        limit = limit_price if limit_price is not None else rec.limit_price
        amount = self.amount_to_precision(rec.market, qty)
        price = self.price_to_precision(rec.market, limit) if limit else None
        stop = self.price_to_precision(rec.market, rec.stop_price) if rec.stop_price else None
        if Decimal(amount) != qty or (price is not None and Decimal(price) != limit):
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

    async def _send(self, rec: TrackedOrder, quantity: Decimal | None = None) -> BrokerOrder:
        """Send the record's current leg (``quantity`` defaults to the whole order)."""
        try:
            request = self._terms(rec, rec.quantity if quantity is None else quantity)
        except OrderError:
            if rec.legs == 0:
                self._records.pop(rec.client_order_id, None)  # never sent (a resumed command): nothing to follow
            raise
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
            if isinstance(exc, DuplicateOrderError) or (exc.code == "-2010" and type(exc) is OrderError):
                rec.state = "unknown"
                found = await self._resolve(rec)
                if found is not None:
                    self.log.info("client order id in use: answering the existing order",
                                  client_order_id=rec.client_order_id, code=exc.code, reason=exc.message)  # fmt: skip
                    return found
            rec.state = BrokerOrderState.REJECTED.value
            if rec.legs == 1:
                self._records.pop(rec.client_order_id, None)  # never at Binance: a corrected resend may follow
            raise
        (self._apply_algo if rec.algo else self._apply)(rec, created)
        await self._complete_fills(rec)
        await self._protect(rec)
        return rec.view()

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
            await self._complete_fills(rec)  # a finished order whose trades were not all listed yet
            return rec.view()
        return await self._refresh(rec)

    async def _cancel_leg(self, rec: TrackedOrder) -> None:
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

    def _cancel_answer(self, raw: dict[str, Any], rec: TrackedOrder) -> dict[str, Any]:
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
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> BrokerOrder:
        """Cancel-replace: the working leg canceled, a new leg (``<coid>.<n>`` as newClientOrderId) for what is
        left of the new quantity at the new price. Fills of every leg stay on the order."""
        if stop_loss is not None or take_profit is not None:
            raise ModificationError("this venue does not change an order's stop-loss / take-profit")
        rec = self._record(client_order_id)
        if stop_price is not None:
            raise ModificationError("stop prices are not modified by the Binance spot adapter: cancel and place")
        if rec.order_type is not OrderType.LIMIT:
            raise ModificationError("only limit orders can be modified")
        if rec.pending:
            await self._resolve(rec)
        if not rec.working:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        left = (rec.quantity if quantity is None else quantity) - rec.prior_filled - rec.leg_filled
        if left > 0:
            try:  # what Binance cannot take is refused before the working leg is canceled
                self._terms(rec, left, limit_price)
            except OrderError as exc:
                raise ModificationError(exc.message, code=exc.code) from exc
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
