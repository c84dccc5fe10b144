"""The paper venue (walking-skeleton scope): a seeded random-walk quote feed and a broker adapter that fills
market orders at the touch and limit orders when the quote crosses them.

Everything here is pure and deterministic for a seed: the feed's n-th quote depends only on (seed, n).
Fill ids derive from the client order id, so a command replayed after a gateway restart reproduces the same
fill id and is deduplicated downstream.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal

import msgspec

from ordermesh.broker import (
    Balance,
    BookLevel,
    BrokerClient,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerPosition,
    ModificationError,
    OrderBook,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.config import FeedSymbol
from ordermesh.wire import Liquidity, OrderType, PlaceOrder, Quote, Side, TimeInForce


class RandomWalkFeed:
    """Per-symbol mid price walking by up to ``volatility_ticks`` ticks per step, never below one tick."""

    def __init__(self, broker_id: str, symbols: dict[str, FeedSymbol], seed: int) -> None:
        self.broker_id = broker_id
        self.specs = dict(symbols)
        self._rng = random.Random(seed)
        self._mid = {sym: spec.initial_price for sym, spec in self.specs.items()}
        self.steps = 0

    def quote(self, symbol: str, ts_ns: int | None = None) -> Quote:
        spec = self.specs[symbol]
        half = (spec.spread / 2).quantize(spec.tick_size)
        mid = self._mid[symbol]
        return Quote(
            broker_id=self.broker_id,
            symbol=symbol,
            bid=mid - half,
            ask=mid - half + spec.spread,
            bid_size=spec.size,
            ask_size=spec.size,
            ts_ns=ts_ns or time.time_ns(),
        )

    def step(self) -> list[Quote]:
        """Advance every symbol one step (in a fixed order, so the walk depends only on the seed)."""
        self.steps += 1
        now = time.time_ns()
        out = []
        for sym in sorted(self.specs):
            spec = self.specs[sym]
            move = self._rng.randint(-spec.volatility_ticks, spec.volatility_ticks)
            self._mid[sym] = max(spec.tick_size * 2 + spec.spread, self._mid[sym] + spec.tick_size * move)
            out.append(self.quote(sym, now))
        return out


class _Order:
    __slots__ = ("broker_order_id", "cmd", "filled", "fills", "state")

    def __init__(self, cmd: PlaceOrder, broker_order_id: str) -> None:
        self.cmd = cmd
        self.broker_order_id = broker_order_id
        self.state = BrokerOrderState.NEW
        self.filled = Decimal(0)
        self.fills: list[BrokerFill] = []

    def view(self) -> BrokerOrder:
        c = self.cmd
        return BrokerOrder(
            client_order_id=c.client_order_id,
            broker_order_id=self.broker_order_id,
            symbol=c.symbol,
            side=c.side,
            quantity=c.quantity,
            state=self.state,
            filled_qty=self.filled,
            limit_price=c.limit_price,
            fills=list(self.fills),
        )


class PaperBroker(BrokerClient):
    """In-process simulated broker on a :class:`RandomWalkFeed`."""

    def __init__(
        self,
        broker_id: str,
        feed: RandomWalkFeed,
        *,
        currency: str = "USD",
        deposit: Decimal = Decimal("100000"),
    ) -> None:
        super().__init__(broker_id)
        self.feed = feed
        self.currency = currency
        self.deposit = deposit
        self._orders: dict[str, _Order] = {}
        self._by_broker_id: dict[str, _Order] = {}
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, avg price)
        self._realized = Decimal(0)

    # ------------------------------------------------------------------------------ orders

    async def validate_connection(self) -> bool:
        return True

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        known = self._orders.get(order.client_order_id)
        if known is not None:
            return known.view()
        if order.symbol not in self.feed.specs:
            raise SymbolNotFoundError(f"unknown symbol {order.symbol!r} at {self.broker_id}")
        if order.quantity <= 0:
            raise OrderError(f"quantity must be positive, got {order.quantity}")
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise OrderError(f"{order.order_type.value} orders are not supported by the paper venue yet")
        if order.order_type is OrderType.LIMIT and order.limit_price is None:
            raise OrderError("a LIMIT order needs limit_price")
        broker_order_id = f"P{order.client_order_id}"
        o = _Order(order, broker_order_id)
        self._orders[order.client_order_id] = o
        self._by_broker_id[broker_order_id] = o
        self._try_fill(o, self.feed.quote(order.symbol), resting=False)
        if o.state is BrokerOrderState.NEW and order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            o.state = BrokerOrderState.CANCELED
        return o.view()

    def on_quote(self, quote: Quote) -> list[tuple[BrokerOrder, BrokerFill]]:
        """Match resting limit orders against a new quote; returns the fills made."""
        out = []
        for o in self._orders.values():
            if o.state is BrokerOrderState.NEW and o.cmd.symbol == quote.symbol:
                fill = self._try_fill(o, quote, resting=True)
                if fill is not None:
                    out.append((o.view(), fill))
        return out

    def _try_fill(self, o: _Order, quote: Quote, *, resting: bool) -> BrokerFill | None:
        """Fill ``o`` against ``quote`` if it can trade. An order marketable on arrival takes the touch
        (taker); a resting limit order that the market moves through fills at its own price (maker)."""
        c = o.cmd
        touch = quote.ask if c.side is Side.BUY else quote.bid
        price = touch
        if c.order_type is OrderType.LIMIT:
            assert c.limit_price is not None
            crosses = touch <= c.limit_price if c.side is Side.BUY else touch >= c.limit_price
            if not crosses:
                return None
            if resting:
                price = c.limit_price
        qty = c.quantity - o.filled
        fill = BrokerFill(
            fill_id=f"{o.broker_order_id}-{len(o.fills) + 1}",
            quantity=qty,
            price=price,
            liquidity=Liquidity.MAKER if resting else Liquidity.TAKER,
            ts_ns=quote.ts_ns,
        )
        o.fills.append(fill)
        o.filled += qty
        o.state = BrokerOrderState.FILLED
        self._apply_position(c.symbol, c.side, qty, price)
        return fill

    def _apply_position(self, symbol: str, side: Side, qty: Decimal, price: Decimal) -> None:
        pos, avg = self._positions.get(symbol, (Decimal(0), Decimal(0)))
        signed = qty * side.sign
        new = pos + signed
        if pos == 0 or (pos > 0) == (signed > 0):
            avg = (pos * avg + signed * price) / new if new else Decimal(0)
        else:
            closed = min(abs(pos), qty)
            self._realized += closed * (price - avg) * (1 if pos > 0 else -1)
            if new == 0:
                avg = Decimal(0)
            elif (new > 0) != (pos > 0):
                avg = price
        self._positions[symbol] = (new, avg)

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        o = self._find(client_order_id, broker_order_id)
        if o.state is BrokerOrderState.NEW:
            o.state = BrokerOrderState.CANCELED
        return o.view()

    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder:
        o = self._find(client_order_id, None)
        if o.state is not BrokerOrderState.NEW:
            raise ModificationError(f"order {client_order_id} is {o.state.value}, it cannot be modified")
        changes: dict[str, Decimal] = {}
        if quantity is not None:
            changes["quantity"] = quantity
        if limit_price is not None:
            changes["limit_price"] = limit_price
        if stop_price is not None:
            changes["stop_price"] = stop_price
        o.cmd = msgspec.structs.replace(o.cmd, **changes)
        return o.view()

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        return self._find(client_order_id, broker_order_id).view()

    def _find(self, client_order_id: str, broker_order_id: str | None) -> _Order:
        o = self._orders.get(client_order_id) or (self._by_broker_id.get(broker_order_id) if broker_order_id else None)
        if o is None:
            raise OrderNotFoundError(f"order {client_order_id} is not known at {self.broker_id}")
        return o

    # ------------------------------------------------------------------------------ account

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        if symbol not in self.feed.specs:
            raise SymbolNotFoundError(f"unknown symbol {symbol!r} at {self.broker_id}")
        q = self.feed.quote(symbol)
        assert q.bid_size is not None and q.ask_size is not None
        return OrderBook(
            symbol=symbol,
            bids=[BookLevel(q.bid, q.bid_size)],
            asks=[BookLevel(q.ask, q.ask_size)],
            ts_ns=q.ts_ns,
        )

    async def get_positions(self) -> list[BrokerPosition]:
        return [
            BrokerPosition(symbol=sym, quantity=qty, avg_price=avg)
            for sym, (qty, avg) in sorted(self._positions.items())
            if qty != 0
        ]

    async def get_balance(self) -> Balance:
        unrealized = Decimal(0)
        for sym, (qty, avg) in self._positions.items():
            if qty:
                q = self.feed.quote(sym)
                mark = q.bid if qty > 0 else q.ask
                unrealized += (mark - avg) * qty
        balance = self.deposit + self._realized
        return Balance(
            currency=self.currency,
            balance=balance,
            equity=balance + unrealized,
            free_margin=balance + unrealized,
        )
