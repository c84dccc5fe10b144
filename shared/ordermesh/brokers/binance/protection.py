"""Attached stop-loss / take-profit (:class:`Protection`): orders of their own (``<coid>-sl`` / ``<coid>-tp``),
placed once their parent has finished with a fill (spot: an OCO list when both; USD-M: algo orders); on futures, the
one that fills cancels its sibling."""

from __future__ import annotations

from decimal import Decimal

from ordermesh.brokers.binance.endpoints import ALGO_NEW, OCO
from ordermesh.brokers.binance.records import ZERO, Records, TrackedOrder, dec
from ordermesh.brokers.binance.requests import attached_requests, is_algo
from ordermesh.brokers.model import BrokerConnectionError, BrokerError, OrderError, OrderNotFoundError
from ordermesh.brokers.reports import attached_command
from ordermesh.contract.wire import Side
from ordermesh.platform import metrics


class Protection(Records):
    """The protective orders of a filled order with a stop-loss / take-profit, and one-cancels-other on futures."""

    async def _protect(self, rec: TrackedOrder) -> None:
        """Once an order with a stop-loss / take-profit has finished with a fill, place its protective orders for
        what it filled (spot: an OCO list when both, since the asset can be locked once). They are orders of
        their own (``<coid>-sl`` / ``<coid>-tp``), reported with the parent's id; a failure is logged and left
        for the next poll to retry."""
        if rec.protected or rec.command is None or rec.working or rec.pending or rec.missing_legs():
            return  # (fills missing: what it bought less commissions is known once they are read)
        if rec.stop_loss is None and rec.take_profit is None:
            rec.protected = True
            return
        filled = self._protect_qty(rec)
        if filled <= 0:
            rec.protected = True
            return
        try:
            requests = attached_requests(
                symbol_id=self._market_id(rec.market), parent_side=rec.side,
                quantity=self.amount_to_precision(rec.market, filled),
                stop_loss=self.price_to_precision(rec.market, rec.stop_loss) if rec.stop_loss else None,
                take_profit=self.price_to_precision(rec.market, rec.take_profit) if rec.take_profit else None,
                client_order_id=rec.client_order_id, futures=self.FUTURES, hedge_mode=self._hedge(),
                position_id=rec.position_id,
            )  # fmt: skip
        except OrderError as exc:  # e.g. what it bought less commissions is below the step: nothing to send
            self.log.error("protective order refused: the position is NOT protected",
                           client_order_id=rec.client_order_id, code=exc.code, reason=exc.message)  # fmt: skip
            metrics.PROTECTION_FAILURES.labels(self.broker_id).inc()
            rec.protected = True
            return
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

    def _protect_qty(self, rec: TrackedOrder) -> Decimal:
        """What the protective orders cover: what was bought, less a commission taken in the bought asset (spot
        holds only that); on futures the filled quantity."""
        filled = rec.prior_filled + rec.leg_filled
        if self.FUTURES or rec.side is not Side.BUY:
            return filled
        base = self._ccxt_market(rec.market)["base"]
        return filled - sum((f.commission for f in rec.fills.values() if f.commission_asset == base), ZERO)

    async def _one_cancels_other(self, rec: TrackedOrder) -> None:
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
