"""Settling what the MT5 gateway cannot see in a reply: unknown outcomes, and pending orders filled on the server.

Both are settled from the EA's listings (POSITIONS, ORDERS, HISTORY TRADES) and never by sending a request again
while an order may exist:

* **Unknown outcome** (a TRADE whose reply was lost, timed out, or said 10012/10031): a trade event naming our
  comment, or the late reply itself (handed over by the link's resynchronisation), settles it at once. Otherwise
  the listings do: a market request is the one unclaimed deal of its symbol, side and volume since it was sent;
  a pending request the one unclaimed working order of its symbol, type, volume and price (or the deal that
  already filled it). Several candidates are reported to the operator (``ordermesh orders --unknown``) and the
  order stays unknown — never guessed. No candidate once ``settle_s`` has passed (``match_window_s`` after a
  10012/10031, which the trade server may still execute) means the request did not execute: it is reported
  rejected with that reason. The EA answers requests one at a time and the link resynchronises after every
  timeout, so a listing read after the request was sent shows its effect if it had one.
* **Pending orders** fill on the server without a trade event (the EA streams only TRADE_TRANSACTION_REQUEST):
  each heartbeat compares the working orders with ORDERS. One that left the list is matched to its deals in
  HISTORY TRADES (symbol, side, a price the order allows, since it was placed); found, it is filled with those
  deals (deal ticket = fill id). Not found within ``settle_s`` it is reported to the operator as unresolved, not
  as canceled: a deal is far likelier than a cancel nobody asked for.

Deals are claimed by one record each. A market order's fill is named after its order ticket (``o<ticket>``, the
stock EA returns no deal ticket), so the deal behind it is linked when HISTORY is next read, and is never offered
to another order.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ordermesh.brokers.model import BrokerConnectionError, BrokerFill, BrokerOrder
from ordermesh.brokers.mt5.listings import (
    DealRow,
    OrderRow,
    ServerClock,
    dealing_candidates,
    order_candidates,
    parse_deals,
    parse_orders,
    pending_fill_candidates,
    same_ticket,
)
from ordermesh.brokers.mt5.protocol import CONNECTION, MARKET, PENDING
from ordermesh.brokers.mt5.tickets import TicketRecord, TicketStore
from ordermesh.platform import metrics

if TYPE_CHECKING:
    from ordermesh.brokers.mt5.transport import EALink


class Reconciliation:
    """Mixin of :class:`ordermesh.brokers.mt5.adapter.MT5Adapter`: the listings and what they settle."""

    broker_id: str
    link: EALink
    clock: ServerClock
    store: TicketStore
    records: dict[str, TicketRecord]
    in_flight: set[str]
    ambiguous: dict[str, list[int]]
    settle_s: float
    match_window_s: int
    log: object

    def _emit(self, order: BrokerOrder) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ listings

    async def orders_open(self) -> list[OrderRow]:
        answer = await self.link.request({"action": "ORDERS"})
        if "orders" not in answer.reply:
            raise BrokerConnectionError(f"ORDERS failed: {answer.reply.get('description') or answer.reply}")
        return parse_orders(answer.reply)

    async def deals(self) -> list[DealRow]:
        """Every buy and sell deal of the account (the EA ignores ``fromDate`` for TRADES)."""
        answer = await self.link.request({"action": "HISTORY", "actionType": "TRADES", "symbol": "", "fromDate": 0})
        if answer.reply and "trades" not in answer.reply:
            raise BrokerConnectionError(f"HISTORY failed: {answer.reply.get('description') or answer.reply}")
        return parse_deals(answer.reply)

    # ------------------------------------------------------------------------------ claims

    def _claimed(self, deals: list[DealRow], exclude: TicketRecord | None = None) -> set[int]:
        """Deal tickets that belong to a record (other than ``exclude``), after linking market fills
        (``o<ticket>``) to their deals. A market fill whose deal cannot be told apart keeps all its candidates
        away from other orders."""
        claimed = {t for r in self.records.values() if r is not exclude for t in r.deals}
        blocked: set[int] = set()
        for rec in self.records.values():
            if rec is exclude or rec.deals or not rec.fills or rec.action_type in PENDING:
                continue
            for fill in rec.fills:
                if not fill.fill_id.startswith("o"):
                    continue
                lo, hi = self.clock.window(rec.sent_s, self.match_window_s)
                found = [
                    d
                    for d in dealing_candidates(
                        deals, symbol=rec.symbol, side=rec.side, volume=fill.quantity, window=(lo, hi), claimed=claimed
                    )
                    if d.price == fill.price
                ]
                if len(found) == 1:
                    rec.deals.append(found[0].ticket)
                    claimed.add(found[0].ticket)
                else:
                    blocked |= {d.ticket for d in found}
        return claimed | blocked

    def _claimed_orders(self, rec: TicketRecord) -> set[int]:
        return {r.order for r in self.records.values() if r is not rec and r.order is not None}

    # ------------------------------------------------------------------------------ unknown outcomes

    def _report_ambiguous(self, key: str, tickets: list[int], kind: str) -> None:
        if self.ambiguous.get(key) != tickets:
            self.ambiguous[key] = tickets
            metrics.MT5_AMBIGUOUS.labels(self.broker_id, kind).inc()
            self.log.error(
                "ambiguous MT5 tickets: reported to the operator, never guessed",  # type: ignore[attr-defined]
                key=key,
                tickets=tickets,
            )

    def _waited(self, rec: TicketRecord) -> bool:
        """Long enough that a request which executed would show in the listings."""
        wait = self.match_window_s if rec.retcode in CONNECTION else self.settle_s
        return time.time() - rec.sent_s >= wait

    async def settle(self, rec: TicketRecord) -> bool:
        """Try to settle an unknown outcome from the listings; True when it is settled (or was already)."""
        if rec.state not in ("sending", "unknown"):
            return True
        if rec.client_order_id in self.in_flight:
            return False
        if rec.fills and rec.action_type not in PENDING:  # a trade event or late reply told it already
            rec.state = "FILLED" if rec.filled >= rec.volume else "CANCELED"
            return await self._settled(rec, "answer received")
        window = self.clock.window(rec.sent_s, self.match_window_s)
        deals = await self.deals()
        claimed = self._claimed(deals, exclude=rec)
        if rec.action_type in PENDING:
            orders = await self.orders_open()
            if rec.order is not None:
                found = [o for o in orders if same_ticket(o.ticket, rec.order)]
            else:
                found = order_candidates(
                    orders,
                    symbol=rec.symbol,
                    action_type=rec.action_type,
                    volume=rec.volume,
                    price=rec.price,
                    window=window,
                    claimed=self._claimed_orders(rec),
                )
            if len(found) == 1:
                rec.order, rec.state = found[0].ticket, "NEW"
                return await self._settled(rec, "working order found in ORDERS")
            if len(found) > 1:
                self._report_ambiguous(rec.client_order_id, sorted(o.ticket for o in found), "unknown_outcome")
                return False
            fills = pending_fill_candidates(
                deals,
                symbol=rec.symbol,
                side=rec.side,
                action_type=rec.action_type,
                price=rec.price,
                remaining=rec.volume,
                window=window,
                claimed=claimed,
            )
            matches = [d for d in fills if d.volume == rec.volume]
            if not matches and rec.order is not None:
                # it was placed (a trade event named its ticket) and has left ORDERS: the working-order poll
                # matches its deals, or reports it; never "not executed"
                rec.state = "NEW"
                return await self._settled(rec, "placed, no longer working")
        else:
            side = rec.side
            matches = dealing_candidates(
                deals, symbol=rec.symbol, side=side, volume=rec.volume, window=window, claimed=claimed
            )
        if len(matches) > 1:
            self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in matches), "unknown_outcome")
            return False
        if len(matches) == 1:
            deal = matches[0]
            self._add_deal(rec, deal)
            rec.state = "FILLED"
            return await self._settled(rec, "deal found in HISTORY")
        if not self._waited(rec):
            return False
        rec.state = "REJECTED"
        rec.reason = (
            f"not executed at MT5: no deal or order of {rec.volume} {rec.symbol} after "
            f"{int(time.time() - rec.sent_s)} s (the reply was lost or said {rec.retcode or 'nothing'})"
        )
        return await self._settled(rec, "no trace at MT5")

    async def _settled(self, rec: TicketRecord, how: str) -> bool:
        self.ambiguous.pop(rec.client_order_id, None)
        await self.store.put(rec)
        self.log.info(
            "unknown outcome settled",
            client_order_id=rec.client_order_id,
            how=how,  # type: ignore[attr-defined]
            state=rec.state,
            order=rec.order,
        )
        return True

    def _add_deal(self, rec: TicketRecord, deal: DealRow) -> None:
        if deal.ticket in rec.deals:
            return
        rec.deals.append(deal.ticket)
        if rec.action_type in MARKET and rec.position_id is None and rec.order is not None:
            rec.position_id = rec.order
        rec.fills.append(
            BrokerFill(
                fill_id=str(deal.ticket),
                quantity=deal.volume,
                price=deal.price,
                ts_ns=(deal.time_s - (self.clock.offset_s or 0)) * 10**9,
                position_id=None if rec.position_id is None else str(rec.position_id),
            )
        )

    # ------------------------------------------------------------------------------ working orders

    async def poll_working(self) -> None:
        """Pending orders fill on the server without a trade event: compare the working ones with ORDERS, and
        match the ones that left it to their deals. Unknown outcomes are retried here too."""
        for rec in [r for r in self.records.values() if r.state in ("sending", "unknown")]:
            try:
                if await self.settle(rec):
                    self._emit(rec.view())
            except BrokerConnectionError:
                return
        working = [r for r in self.records.values() if r.state in ("NEW", "PARTIALLY_FILLED") and r.order is not None]
        if not working:
            return
        orders = await self.orders_open()
        gone = []
        for rec in working:
            row = next((o for o in orders if same_ticket(o.ticket, rec.order)), None)
            if row is not None:
                rec.order = row.ticket  # the full ticket from now on
                rec.vanished_s = None
                continue
            gone.append(rec)
        if gone:
            await self._match_gone(gone)

    async def _match_gone(self, gone: list[TicketRecord]) -> None:
        deals = await self.deals()
        claimed = self._claimed(deals)
        offers: dict[int, list[TicketRecord]] = {}
        wanted: dict[str, list[DealRow]] = {}
        for rec in gone:
            left = rec.volume - rec.filled
            window = self.clock.window(rec.sent_s, 10**9)  # a pending order may fill any time after placement
            found = pending_fill_candidates(
                deals,
                symbol=rec.symbol,
                side=rec.side,
                action_type=rec.action_type,
                price=rec.price,
                remaining=left,
                window=window,
                claimed=claimed,
            )
            wanted[rec.client_order_id] = found
            for d in found:
                offers.setdefault(d.ticket, []).append(rec)
        for rec in gone:
            found = wanted[rec.client_order_id]
            contested = [d for d in found if len(offers[d.ticket]) > 1]
            if contested:
                self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in contested), "fill")
                continue
            before = (rec.state, len(rec.fills))
            take, left = [], rec.volume - rec.filled
            for d in sorted(found, key=lambda d: (d.time_s, d.ticket)):
                if d.volume <= left:
                    take.append(d)
                    left -= d.volume
            if take and left == 0:
                for d in take:
                    self._add_deal(rec, d)
                rec.state = "FILLED"
            elif rec.cancel_sent:
                rec.state = "CANCELED"
            else:
                now = int(time.time())
                rec.vanished_s = rec.vanished_s or now
                if now - rec.vanished_s >= self.settle_s:
                    self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in found), "vanished")
            if (rec.state, len(rec.fills)) != before:
                self.ambiguous.pop(rec.client_order_id, None)
                await self.store.put(rec)
                self._emit(rec.view())
            elif rec.vanished_s is not None:
                await self.store.put(rec)
