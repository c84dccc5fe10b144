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
  as canceled: a deal is far likelier than a cancel nobody asked for. A pending order the server fills in part
  stays in ORDERS looking unchanged (the EA lists ORDER_VOLUME_INITIAL), so while one is working each heartbeat
  also reads POSITIONS (small): when the positions changed, HISTORY is read and the order's new deals are its
  partial fills.

HISTORY TRADES is read only when something needs it (an unknown outcome, an order gone from ORDERS, positions
that changed while a pending order works, and at least every ``match_window_s`` while one does), at most once
per heartbeat, with ``fromDate`` set to the earliest time an open order could claim a deal. The stock EA ignores
``fromDate`` (HistorySelect(0, TimeCurrent())), so older rows are dropped before matching.

Deals are claimed by one record each. A market order's fill is named after its order ticket (``o<ticket>``, the
stock EA returns no deal ticket), so the deal behind it is linked when HISTORY is next read, and is never offered
to another order; nor is a deal that may be an unsettled market order's.

**Pruning.** A record whose order is final is deleted (memory and KV) once ``keep_final_s`` has passed and no open
order could still be offered its deals (every open order was sent after it was done); a command for which no
record exists any more is then too old to place (``place_order`` refuses one older than ``keep_final_s``).
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
from ordermesh.brokers.mt5.tickets import UNSETTLED, WORKING, TicketRecord, TicketStore
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
    keep_final_s: float
    log: object
    _emitted: dict[str, tuple[str, int]]
    _held: set[str]  # records loaded at start, kept until the gateway said which of them it still waits on
    _started: float
    _positions_seen: tuple[object, ...] | None
    _history_at: float
    _looked: set[str]  # records whose position ticket was looked for when their fill was reported

    def _emit(self, order: BrokerOrder) -> None:
        raise NotImplementedError

    async def _position_checked(self, rec: TicketRecord) -> None:
        """Before a fill is reported: its position's full ticket (the adapter reads it from POSITIONS)."""

    def _observe_deals(self, deals: list[DealRow]) -> None:
        """What a HISTORY read proves about the margin mode (the adapter checks it against its settings)."""

    async def _save(self, rec: TicketRecord) -> None:
        """Store the record (KV ``om_mt5``); the moment it is final is noted for pruning."""
        if rec.final and rec.done_s is None:
            rec.done_s = int(time.time())
        await self.store.put(rec)

    # ------------------------------------------------------------------------------ listings

    async def orders_open(self) -> list[OrderRow]:
        answer = await self.link.request({"action": "ORDERS"})
        if "orders" not in answer.reply:
            raise BrokerConnectionError(f"ORDERS failed: {answer.reply.get('description') or answer.reply}")
        return parse_orders(answer.reply)

    async def deals(self, since_s: int | None = None) -> list[DealRow]:
        """Buy and sell deals from ``since_s`` on (server clock; default :meth:`history_from`). It is sent as
        ``fromDate`` for an EA that reads it; the stock EA does not (HistorySelect(0, TimeCurrent())), so older
        rows are dropped here."""
        since = self.history_from() if since_s is None else since_s
        answer = await self.link.request({"action": "HISTORY", "actionType": "TRADES", "symbol": "", "fromDate": since})
        if answer.reply and "trades" not in answer.reply:
            raise BrokerConnectionError(f"HISTORY failed: {answer.reply.get('description') or answer.reply}")
        self._history_at = time.monotonic()
        rows = parse_deals(answer.reply)
        self._observe_deals(rows)
        return [d for d in rows if d.time_s >= since]

    def history_from(self) -> int:
        """The earliest server time an open order could claim a deal from (0 while the server clock is unknown)."""
        if self.clock.offset_s is None:
            return 0
        start = min((r.sent_s for r in self.records.values() if not r.final), default=int(time.time()))
        return max(0, self.clock.window(start, 0)[0])

    # ------------------------------------------------------------------------------ claims

    def _links(self, deals: list[DealRow], exclude: TicketRecord | None = None) -> tuple[set[int], list[set[int]]]:
        """Deal tickets that belong to a record (other than ``exclude``), after linking market fills
        (``o<ticket>``) to their deals; and, for each market fill whose deal cannot be told apart yet, the deals
        it may be (same symbol, side, volume and price, between its send and its answer): one of them is its."""
        claimed = {t for r in self.records.values() if r is not exclude for t in r.deals}
        reserved: list[set[int]] = []
        for rec in self.records.values():
            if rec is exclude or rec.deals or not rec.fills or rec.action_type in PENDING:
                continue
            for fill in rec.fills:
                if not fill.fill_id.startswith("o"):
                    continue
                lo, hi = self.clock.window(rec.sent_s, self.match_window_s)
                hi = min(hi, self.clock.latest(fill.ts_ns // 10**9 + 1))  # the deal was done before its answer came
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
                elif found:
                    reserved.append({d.ticket for d in found})
        return claimed, reserved

    def _claimed(
        self, deals: list[DealRow], exclude: TicketRecord | None = None, *, unsettled: bool = False
    ) -> set[int]:
        """Deals no other order may be offered: those records own, and every deal a market fill not linked yet may
        be; with ``unsettled``, also every deal a market request whose outcome is not known yet may be."""
        claimed, reserved = self._links(deals, exclude)
        blocked = set().union(*reserved)
        if unsettled:
            for rec in self.records.values():
                if rec.state in UNSETTLED and rec.action_type not in PENDING and not rec.fills:
                    window = self.clock.window(rec.sent_s, self.match_window_s)
                    blocked |= {
                        d.ticket
                        for d in dealing_candidates(
                            deals, symbol=rec.symbol, side=rec.side, volume=rec.volume, window=window, claimed=claimed
                        )
                    }
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

    async def settle(
        self, rec: TicketRecord, deals: list[DealRow] | None = None, orders: list[OrderRow] | None = None
    ) -> bool:
        """Try to settle an unknown outcome from the listings (read now unless given); True when it is settled
        (or was already)."""
        if rec.state not in UNSETTLED:
            return True
        if rec.client_order_id in self.in_flight:
            return False
        if rec.fills and rec.action_type not in PENDING:  # a trade event or late reply told it already
            rec.state = "FILLED" if rec.filled >= rec.volume else "CANCELED"
            return await self._settled(rec, "answer received")
        window = self.clock.window(rec.sent_s, self.match_window_s)
        if rec.action_type in PENDING and orders is None:
            orders = await self.orders_open()
        if deals is None:
            deals = await self.deals()
        if rec.state not in UNSETTLED or (rec.fills and rec.action_type not in PENDING):
            # settled while the listings were read: the link's resynchronisation brought the late reply, or the
            # trade event came (a deal matched now would be the same fill twice)
            return True
        linked, reserved = self._links(deals, exclude=rec)
        claimed = linked | set().union(*reserved)
        if rec.action_type in PENDING:
            assert orders is not None
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
            found = dealing_candidates(
                deals, symbol=rec.symbol, side=rec.side, volume=rec.volume, window=window, claimed=linked
            )
            matches = free_for(found, reserved)
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
        await self._save(rec)
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
        """Pending orders fill on the server without a trade event: compare the working ones with ORDERS, match
        the ones that left it to their deals, and look for partial fills of the ones still there when the
        positions changed. Unknown outcomes are settled here too. HISTORY is read at most once, after ORDERS
        (a fill that emptied an order from the list is then in it)."""
        await self.prune()
        unsettled = [
            r for r in self.records.values() if r.state in UNSETTLED and r.client_order_id not in self.in_flight
        ]
        working = [r for r in self.records.values() if r.state in WORKING and r.order is not None]
        if not unsettled and not working:
            self._positions_seen = None
            return
        try:
            resting = [r for r in working if r.action_type in PENDING]
            seen = await self._positions_fingerprint() if resting else None
            orders = None
            if working or any(r.action_type in PENDING for r in unsettled):
                orders = await self.orders_open()
            listed, gone = [], []
            for rec in working:
                row = next((o for o in orders or [] if same_ticket(o.ticket, rec.order)), None)
                if row is None:
                    gone.append(rec)
                    continue
                rec.order = row.ticket  # the full ticket from now on
                rec.vanished_s = None
                if rec.action_type in PENDING:
                    listed.append(rec)
            look = bool(unsettled or gone)
            if listed and (
                seen is None
                or seen != self._positions_seen
                or time.monotonic() - self._history_at >= self.match_window_s
            ):
                look = True
            if not look:
                return
            deals = await self.deals()
            for rec in unsettled:
                if await self.settle(rec, deals, orders):
                    await self._position_checked(rec)
                    self._emit(rec.view())
            await self._match_fills(gone, listed, deals)
            self._positions_seen = seen
        except BrokerConnectionError:
            return

    async def _positions_fingerprint(self) -> tuple[object, ...] | None:
        """The POSITIONS listing as it stands (None when it cannot be read): a partial fill changes it."""
        answer = await self.link.request({"action": "POSITIONS"})
        rows = answer.reply.get("positions")
        if answer.errors or not isinstance(rows, list):
            return None
        return tuple(tuple(sorted((str(k), str(v)) for k, v in r.items())) for r in rows if isinstance(r, dict))

    def _candidates(
        self, recs: list[TicketRecord], deals: list[DealRow], claimed: set[int]
    ) -> dict[str, list[DealRow]]:
        out = {}
        for rec in recs:
            window = self.clock.window(rec.sent_s, 10**9)  # a pending order may fill any time after placement
            out[rec.client_order_id] = pending_fill_candidates(
                deals,
                symbol=rec.symbol,
                side=rec.side,
                action_type=rec.action_type,
                price=rec.price,
                remaining=rec.volume - rec.filled,
                window=window,
                claimed=claimed,
            )
        return out

    async def _match_fills(self, gone: list[TicketRecord], listed: list[TicketRecord], deals: list[DealRow]) -> None:
        """Deals for the pending orders that left ORDERS (all their volume, or they are reported), then for the
        ones still working (partial fills). A deal two orders could claim is reported, never guessed."""
        claimed = self._claimed(deals, unsettled=True)
        wanted = self._candidates(gone, deals, claimed)
        offers: dict[int, int] = {}
        for found in wanted.values():
            for d in found:
                offers[d.ticket] = offers.get(d.ticket, 0) + 1
        unresolved = []
        for rec in gone:
            found = wanted[rec.client_order_id]
            contested = [d for d in found if offers[d.ticket] > 1]
            if contested:
                self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in contested), "fill")
                unresolved.append(rec)
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
                    claimed.add(d.ticket)
                rec.state = "FILLED"
            elif rec.cancel_sent:
                rec.state = "CANCELED"
            else:
                unresolved.append(rec)
                now = int(time.time())
                rec.vanished_s = rec.vanished_s or now
                if now - rec.vanished_s >= self.settle_s:
                    self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in found), "vanished")
            await self._changed(rec, before)
        if not listed:
            return
        # partial fills of orders still working: any deal an unresolved gone order could also claim is contested
        wanted = self._candidates(listed + unresolved, deals, claimed)
        offers = {}
        for found in wanted.values():
            for d in found:
                offers[d.ticket] = offers.get(d.ticket, 0) + 1
        for rec in listed:
            found = wanted[rec.client_order_id]
            if not found:
                continue
            contested = [d for d in found if offers[d.ticket] > 1]
            if contested:
                self._report_ambiguous(rec.client_order_id, sorted(d.ticket for d in contested), "fill")
                continue
            before = (rec.state, len(rec.fills))
            left = rec.volume - rec.filled
            for d in sorted(found, key=lambda d: (d.time_s, d.ticket)):
                if d.volume <= left:
                    self._add_deal(rec, d)
                    left -= d.volume
            rec.state = "FILLED" if rec.filled >= rec.volume else "PARTIALLY_FILLED" if rec.fills else rec.state
            await self._changed(rec, before)

    async def _changed(self, rec: TicketRecord, before: tuple[str, int]) -> None:
        if (rec.state, len(rec.fills)) != before:
            self.ambiguous.pop(rec.client_order_id, None)
            await self._save(rec)
            self._emit(rec.view())
        elif rec.vanished_s is not None:
            await self._save(rec)

    # ------------------------------------------------------------------------------ pruning

    async def prune(self) -> None:
        """Delete the records of orders final for ``keep_final_s`` whose deals no open order could be offered
        (each open order was sent after they were done, on the server's clock). Records loaded at start are
        kept until the gateway has said which orders it still waits on (``resume``), or ``keep_final_s``."""
        now = int(time.time())
        opened = [r.sent_s for r in self.records.values() if not r.final]
        horizon = self.clock.window(min(opened, default=now), 0)[0]
        held = self._held if time.monotonic() - self._started < self.keep_final_s else set()
        for rec in list(self.records.values()):
            key = rec.client_order_id
            if (
                not rec.final
                or rec.done_s is None
                or now - rec.done_s < self.keep_final_s
                or self.clock.latest(rec.done_s) >= horizon
                or key in self.ambiguous
                or key in self.in_flight
                or key in held
            ):
                continue
            del self.records[key]
            self._emitted.pop(key, None)
            self._looked.discard(key)
            await self.store.delete(key)
            self.log.debug("ticket record pruned", client_order_id=key, state=rec.state)  # type: ignore[attr-defined]


def _matched(sets: list[set[int]]) -> int:
    """How many of ``sets`` can each get a deal of their own (a maximum bipartite matching, augmenting paths)."""
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for t in sets[i]:
            if t not in seen:
                seen.add(t)
                if t not in owner or augment(owner[t], seen):
                    owner[t] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(sets)))


def free_for(found: list[DealRow], reserved: list[set[int]]) -> list[DealRow]:
    """The deals a market request of unknown outcome may take among its candidates ``found`` while every market
    fill not linked yet still gets one of the deals it may be (``reserved``). When the only choice is among deals a
    fill could also be, they are interchangeable (same symbol, side, volume and price): the latest is taken."""
    base = _matched(reserved)
    free = [d for d in found if _matched([r - {d.ticket} for r in reserved]) == base]
    shared = [d for d in free if any(d.ticket in r for r in reserved)]
    if len(free) > 1 and len(shared) == len(free) and len({d.price for d in free}) == 1:
        return [max(free, key=lambda d: (d.time_s, d.ticket))]
    return free
