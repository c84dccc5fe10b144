"""The paper venue: a broker adapter that behaves like a venue, on books from :mod:`ordermesh.brokers.paper.feed`.

Orders meet the book (:mod:`ordermesh.brokers.paper.matching`): market orders walk it, limits rest and fill as
maker when the book crosses them, stops trigger on the quote, IOC/FOK/GTC/DAY/GTD behave as named, stop-loss /
take-profit given with an order become working orders (reduce-only, one cancels the other) once it fills. Every
fill carries its commission (:mod:`ordermesh.brokers.paper.commissions`), its reference price (the intent's
``reference_price``, else the mid of the book at the decision time: the intent's time, or the trigger for stops and
attached orders) and its slippage in basis points. The account is netting per symbol with leverage and margin from
the instrument specs (:func:`ordermesh.sizing.instruments.margin_per_lot`); an order that would need more margin
than is free is refused with :class:`InsufficientFundsError`.

Tickets (order, deal and position numbers) only increase and are persisted with every order through a
:class:`PaperStore` (the gateway's is the KV bucket ``om_paper``) before the adapter returns, so a restart never
reuses one, and an order placed again after a restart (a redelivered command) is answered from its stored state
with the same fill ids. The account (positions, balance) is rebuilt from the stored fills on start.

Everything is deterministic for a seed: the same orders against the same steps of the feed give the same fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec
import structlog

from ordermesh.brokers.client import BrokerClient, Capabilities, VenueChange
from ordermesh.brokers.model import (
    Balance,
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
from ordermesh.brokers.paper.commissions import CommissionModel, charge, model_for
from ordermesh.brokers.paper.feed import Feed, book_mid, book_quote
from ordermesh.brokers.paper.matching import (
    Execution,
    SlippageModel,
    available,
    expiry_ns,
    match_arriving,
    match_resting,
    opposite,
    slippage_bps,
    stop_triggered,
    with_extra_slippage,
)
from ordermesh.brokers.paper.store import KvPaperStore, MemoryPaperStore, PaperStore
from ordermesh.brokers.reports import attached_command, reports_for
from ordermesh.contract.ids import order_event_id
from ordermesh.contract.subjects import KV_PAPER
from ordermesh.contract.wire import (
    ExecEvent,
    Liquidity,
    OrderCanceled,
    OrderFilled,
    OrderTriggered,
    OrderType,
    PlaceOrder,
    Quote,
    Side,
    TimeInForce,
)
from ordermesh.sizing.instruments import InstrumentOverride, InstrumentSpec, conversion_rate, margin_per_lot

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


log = structlog.get_logger("ordermesh.paper")
ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
WORKING: Final = (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED)
#: How often the market's mids are stored while no order changes (steps of ``quote_interval_s``), and finished
#: orders are forgotten.
MARKS_EVERY_STEPS: Final = 25
#: A finished order stays in memory this long after its command expired (clocks of router and gateway differ).
FORGET_MARGIN_NS: Final = 60_000_000_000


class Tickets(msgspec.Struct, kw_only=True):
    """The last order, deal and position numbers handed out, and the market's last mid per symbol (a restarted
    venue's prices continue from there instead of jumping back to ``initial_price``)."""

    order: int = 0
    deal: int = 0
    position: int = 0
    marks: dict[str, Decimal] = msgspec.field(default_factory=dict)


class PaperFill(msgspec.Struct, frozen=True, kw_only=True):
    deal_id: str
    quantity: Decimal
    price: Decimal
    liquidity: Liquidity
    ts_ns: int
    commission: Decimal
    commission_asset: str
    reference_price: Decimal
    slippage_bps: Decimal | None  # None: not measurable against that reference
    position_id: str
    #: What the fill did to the balance, in the account currency: realized PnL minus the commission.
    cash: Decimal


class PaperOrder(msgspec.Struct, kw_only=True):
    """One order at the venue, as stored."""

    cmd: PlaceOrder
    broker_order_id: str
    state: BrokerOrderState = BrokerOrderState.NEW
    accepted_ns: int = 0
    expire_ns: int | None = None
    triggered: bool = False
    reference_price: Decimal | None = None
    filled: Decimal = ZERO
    fills: list[PaperFill] = msgspec.field(default_factory=list)
    commission_raw: Decimal = ZERO
    commission_charged: Decimal = ZERO
    reason: str = ""
    parent: str | None = None  # an attached SL/TP: the order it protects
    children: list[str] = msgspec.field(default_factory=list)

    @property
    def coid(self) -> str:
        return self.cmd.client_order_id

    @property
    def working(self) -> bool:
        return self.state in WORKING

    @property
    def leaves(self) -> Decimal:
        return self.cmd.quantity - self.filled

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
            fills=[
                BrokerFill(
                    fill_id=f.deal_id,
                    quantity=f.quantity,
                    price=f.price,
                    commission=f.commission,
                    commission_asset=f.commission_asset,
                    liquidity=f.liquidity,
                    ts_ns=f.ts_ns,
                )
                for f in self.fills
            ],
        )


_order_decoder = msgspec.msgpack.Decoder(PaperOrder)
_tickets_decoder = msgspec.msgpack.Decoder(Tickets)


def encode_order(order: PaperOrder) -> bytes:
    return msgspec.msgpack.encode(order)


def decode_order(data: bytes) -> PaperOrder:
    return _order_decoder.decode(data)


def encode_tickets(tickets: Tickets) -> bytes:
    return msgspec.msgpack.encode(tickets)


def decode_tickets(data: bytes) -> Tickets:
    return _tickets_decoder.decode(data)


class _Position:
    __slots__ = ("avg", "position_id", "qty")

    def __init__(self) -> None:
        self.qty = ZERO
        self.avg = ZERO
        self.position_id = ""


class PaperBroker(BrokerClient):
    """The simulated venue on a :class:`ordermesh.brokers.paper.feed.Feed`."""

    # Every order, command included, is in the venue's store (KV om_paper); its market steps as its quotes are read.
    capabilities = Capabilities(
        keeps_commands=True, streams_quotes=True, reports_instruments=True, state_bucket=KV_PAPER
    )

    def __init__(
        self,
        broker_id: str,
        feed: Feed,
        *,
        currency: str = "USD",
        deposit: Decimal = Decimal("100000"),
        instruments: Mapping[str, InstrumentSpec] | None = None,
        leverage: Decimal | None = None,
        commissions: Mapping[str, CommissionModel] | None = None,
        slippage: Mapping[str, SlippageModel] | None = None,
        store: PaperStore | None = None,
        clock: Callable[[], int] = time.time_ns,
        quote_interval_s: float = 0.2,
    ) -> None:
        super().__init__(broker_id)
        self.feed = feed
        self.currency = currency
        self.deposit = deposit
        specs = dict(instruments or {})
        if leverage is not None:
            specs = {s: msgspec.structs.replace(spec, leverage=leverage) for s, spec in specs.items()}
        self.specs = specs
        self.commissions = dict(commissions or {})
        self.slippage = dict(slippage or {})
        self.store: PaperStore = store if store is not None else MemoryPaperStore()
        self.clock = clock
        self.quote_interval_s = quote_interval_s
        self.tickets = Tickets()
        self._orders: dict[str, PaperOrder] = {}
        self._by_broker_id: dict[str, PaperOrder] = {}
        #: symbol -> client order id -> order, for the working orders only: a market tick looks at these, never at
        #: every order the venue ever held (18.8 ms a tick at 100,000 orders when it did)
        self._working: dict[str, dict[str, PaperOrder]] = {}
        self._positions: dict[str, _Position] = {}
        self._cash = ZERO
        self._unsaved: set[str] = set()
        self._save_lock = asyncio.Lock()
        self._unreported: dict[str, None] = {}  # insertion-ordered set
        self._placing: set[str] = set()  # orders whose placement has not been reported by its handler yet
        self._finished: dict[str, int] = {}  # finished orders, by when memory may forget them (ns), oldest first
        self._recent: dict[str, None] = {}
        self._loaded = False

    # ------------------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Load the stored tickets and orders, and rebuild the account from their fills (deal order)."""
        if self._loaded:
            return
        tickets, orders = await self.store.load()
        if tickets is not None:
            self.tickets = decode_tickets(tickets)
            self.feed.resume(self.tickets.marks)
        fills: list[tuple[int, PaperOrder, PaperFill]] = []
        for raw in orders:
            o = decode_order(raw)
            self._orders[o.coid] = o
            self._by_broker_id[o.broker_order_id] = o
            if o.working:
                self._working.setdefault(o.cmd.symbol, {})[o.coid] = o
            elif o.parent is None and not o.children and o.cmd.command_expires_ns is not None:
                self._finished[o.coid] = o.cmd.command_expires_ns + FORGET_MARGIN_NS
            fills += [(int(f.deal_id), o, f) for f in o.fills]
        for _, o, f in sorted(fills, key=lambda t: t[0]):
            self._apply_position(o.cmd.symbol, o.cmd.side, f.quantity, f.price, f.position_id)
            self._cash += f.cash
        self._finished = dict(sorted(self._finished.items(), key=lambda kv: kv[1]))
        self.prune_finished()  # what a restart loaded only to rebuild the account
        # the one writer from now on: a gateway that loaded before (one that lost its lease) can no longer save
        await self.store.claim(encode_tickets(self.tickets))
        self._loaded = True

    async def validate_connection(self) -> bool:
        return True

    def use_state_store(self, kv: KeyValue) -> None:
        self.store = KvPaperStore(kv, self.broker_id)

    async def _save(self) -> None:
        # One save at a time (the store writes its tickets by revision, one writer): a caller waits for the save
        # in flight, which may have taken its orders too (group commit), and then saves whatever is still unsaved.
        async with self._save_lock:
            if not self._unsaved:
                return
            # Take this batch now: orders touched while it is being written belong to the next save.
            batch = sorted(self._unsaved)
            self._unsaved.difference_update(batch)
            orders = {coid: encode_order(self._orders[coid]) for coid in batch}
            self.tickets.marks = self.feed.marks()
            try:
                await self.store.save(encode_tickets(self.tickets), orders)
            except BaseException:
                self._unsaved.update(batch)
                raise

    def _touch(self, o: PaperOrder) -> None:
        if o.working:
            self._working.setdefault(o.cmd.symbol, {})[o.coid] = o
        else:
            self._working.get(o.cmd.symbol, {}).pop(o.coid, None)
            if o.parent is None and not o.children:  # (linked orders are looked up by their relatives: kept)
                # forgettable once no delivery of its command can reach the venue: the gateway refuses an
                # expired command before placing it; a command without an expiry keeps its order
                expires = o.cmd.command_expires_ns
                if expires is not None:
                    self._finished[o.coid] = max(expires, self.clock()) + FORGET_MARGIN_NS
        self._unsaved.add(o.coid)
        self._unreported[o.coid] = None
        self._recent[o.coid] = None

    def unreported(self) -> list[PaperOrder]:
        """Orders changed since :meth:`reported` was last called for them (in the order they changed)."""
        return [self._orders[c] for c in self._unreported]

    def reported(self, orders: list[PaperOrder]) -> None:
        for o in orders:
            self._unreported.pop(o.coid, None)

    def order(self, client_order_id: str) -> PaperOrder:
        return self._find(client_order_id, None)

    def take_reports(self, cmd: PlaceOrder, order: BrokerOrder) -> list[ExecEvent]:
        self._placing.discard(cmd.client_order_id)
        o = self.order(cmd.client_order_id)
        # Marked before publishing, so the market does not report it too; a failed publish means a redelivered
        # command, answered from the venue's stored order.
        self.reported([o])
        return paper_reports(o)

    def take_changes(self) -> Iterator[VenueChange]:
        # All taken at once, before any is published: a concurrent caller (another handler, while this one awaits
        # its PubAcks) finds none of them. An order still being placed is its placing handler's to report; one
        # whose state is not stored yet (a save that failed) waits for it: the venue's state before its reports.
        orders = [o for o in self.unreported() if o.coid not in self._placing and o.coid not in self._unsaved]
        self.reported(orders)
        return iter([VenueChange(o.cmd, paper_reports(o), o.working) for o in orders])

    def _next(self, kind: str) -> str:
        value = getattr(self.tickets, kind) + 1
        setattr(self.tickets, kind, value)
        return str(value)

    # ------------------------------------------------------------------------------ instruments

    def _spec(self, symbol: str) -> InstrumentSpec | None:
        return self.specs.get(symbol)

    def _price_of(self, symbol: str) -> Decimal | None:
        return self.feed.mid(symbol) if symbol in self.feed.specs else None

    def _contract(self, symbol: str) -> Decimal:
        spec = self._spec(symbol)
        return spec.contract_size if spec else ONE

    def _currencies(self, symbol: str) -> tuple[str, str]:
        spec = self._spec(symbol)
        if spec is None:
            return symbol, self.currency
        return spec.base_currency, spec.quote_currency

    def _to_account(self, amount: Decimal, ccy: str) -> Decimal:
        rate = conversion_rate(ccy, self.currency, self._price_of)
        if rate is None:
            raise LookupError(f"no price to convert {ccy} to {self.currency}")
        return amount * rate

    def _margin_per_lot(self, symbol: str, price: Decimal) -> Decimal:
        spec = self._spec(symbol)
        if spec is None:
            return ZERO  # no spec: the venue does not margin the symbol
        value, _line = margin_per_lot(spec, self.currency, price, self._price_of)
        return value

    # ------------------------------------------------------------------------------ orders

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        known = self._orders.get(order.client_order_id)
        if known is not None:
            return known.view()
        self._validate(order)
        book = self.feed.book(order.symbol)
        self._check_protection(order, book)
        self._check_margin(order, book)
        now = self.clock()
        o = PaperOrder(
            cmd=order,
            broker_order_id=self._next("order"),
            accepted_ns=now,
            expire_ns=expiry_ns(order.time_in_force, now, order.expire_at_ns),
        )
        self._orders[order.client_order_id] = o
        self._by_broker_id[o.broker_order_id] = o
        # until ``take_reports``, the placing handler's to report (not a concurrent ``take_changes``)
        self._placing.add(order.client_order_id)
        self._touch(o)
        if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            assert order.stop_price is not None
            if stop_triggered(book, order.side, order.stop_price):
                self._trigger(o, book)
        else:
            o.reference_price = order.reference_price or book_mid(self.feed.book_at(order.symbol, order.intent_ts_ns))
            self._arrive(o, book, now)
        try:
            await self._save()
        except BaseException:
            self._placing.discard(order.client_order_id)  # a redelivered command reports it from the stored order
            raise
        return o.view()

    def _validate(self, order: PlaceOrder) -> None:
        if order.symbol not in self.feed.specs:
            raise SymbolNotFoundError(f"unknown symbol {order.symbol!r} at {self.broker_id}")
        if not order.quantity.is_finite() or order.quantity <= 0:
            raise OrderError(f"quantity must be positive, got {order.quantity}")
        t = order.order_type
        if t in (OrderType.LIMIT, OrderType.STOP_LIMIT) and (order.limit_price is None or order.limit_price <= 0):
            raise OrderError(f"a {t.value} order needs a positive limit_price")
        if t in (OrderType.STOP, OrderType.STOP_LIMIT) and (order.stop_price is None or order.stop_price <= 0):
            raise OrderError(f"a {t.value} order needs a positive stop_price")
        if order.time_in_force is TimeInForce.GTD:
            if order.expire_at_ns is None:
                raise OrderError("a GTD order needs expire_at_ns")
            if order.expire_at_ns <= self.clock():
                raise OrderError("a GTD order's expiry time has already passed")
        if order.reduce_only:
            pos = self._positions.get(order.symbol)
            held = pos.qty if pos else ZERO
            if held * order.side.sign >= 0 or order.quantity > abs(held):
                raise OrderError(f"reduce-only {order.side.value} {order.quantity} would not reduce position {held}")
        for name in ("stop_loss", "take_profit"):
            price = getattr(order, name)
            if price is not None and price <= 0:
                raise OrderError(f"{name} must be positive, got {price}")

    def _check_protection(self, order: PlaceOrder, book: OrderBook) -> None:
        """A stop-loss below (a buy's) or above (a sell's) the entry, a take-profit on the other side, as real
        venues require (MT5: TRADE_RETCODE_INVALID_STOPS): a take-profit on the wrong side would be an order that
        fills at once at its own absurd limit."""
        if order.stop_loss is None and order.take_profit is None:
            return
        entry = order.limit_price or order.stop_price or opposite(book, order.side)[0].price
        below, above = (
            (order.stop_loss, order.take_profit) if order.side is Side.BUY else (order.take_profit, order.stop_loss)
        )
        if below is not None and below >= entry:
            raise OrderError(f"invalid stops: {below} must be below the entry {entry} for a {order.side.value}")
        if above is not None and above <= entry:
            raise OrderError(f"invalid stops: {above} must be above the entry {entry} for a {order.side.value}")

    def _check_margin(self, order: PlaceOrder, book: OrderBook) -> None:
        """Refuse an order whose added exposure needs more margin than is free (reducing is always allowed)."""
        pos = self._positions.get(order.symbol)
        held = pos.qty if pos else ZERO
        after = held + order.quantity * order.side.sign
        added = max(ZERO, abs(after) - abs(held))
        if not added or self._spec(order.symbol) is None:
            return
        price = order.limit_price or order.stop_price or opposite(book, order.side)[0].price
        try:
            per_lot = self._margin_per_lot(order.symbol, price)
            balance = self._balance()
        except LookupError as exc:
            raise OrderError(f"cannot margin {order.symbol}: {exc}") from None
        needed = added * per_lot
        if needed > balance.free_margin:
            raise InsufficientFundsError(
                f"margin {needed:.2f} {self.currency} needed for {added} {order.symbol}, "
                f"free margin {balance.free_margin:.2f} {self.currency}"
            )

    def _arrive(self, o: PaperOrder, book: OrderBook, ts_ns: int) -> None:
        """Match a (newly working) order against ``book`` as taker; the rest rests or is canceled."""
        c = o.cmd
        if c.order_type is OrderType.MARKET or (c.order_type is OrderType.STOP and o.triggered):
            kind = OrderType.MARKET
        else:
            kind = OrderType.LIMIT
        outcome = match_arriving(book, c.side, o.leaves, kind, c.limit_price, c.time_in_force)
        model = self._slippage_model(c.symbol)
        extra = model.extra_bps(o.leaves, available(book, c.side)) if model else ZERO
        tick = self.feed.specs[c.symbol].tick_size
        for ex in outcome.executions:
            price = with_extra_slippage(c.side, ex.price, extra, tick)
            if kind is OrderType.LIMIT and c.limit_price is not None:
                price = min(price, c.limit_price) if c.side is Side.BUY else max(price, c.limit_price)
            self._fill(o, Execution(price, ex.quantity, ex.liquidity), ts_ns)
        if outcome.canceled:
            o.state = BrokerOrderState.CANCELED
            o.reason = outcome.reason
            self._touch(o)

    def _slippage_model(self, symbol: str) -> SlippageModel | None:
        import fnmatch

        found = self.slippage.get(symbol)
        if found is not None:
            return found
        for pattern, model in self.slippage.items():
            if fnmatch.fnmatchcase(symbol, pattern):
                return model
        return None

    def _trigger(self, o: PaperOrder, book: OrderBook) -> None:
        o.triggered = True
        o.reference_price = o.cmd.reference_price or book_mid(book)
        self._touch(o)
        self._arrive(o, book, book.ts_ns)

    def _fill(self, o: PaperOrder, ex: Execution, ts_ns: int) -> None:
        c = o.cmd
        base, quote = self._currencies(c.symbol)
        contract = self._contract(c.symbol)
        model = model_for(self.commissions, c.symbol)
        ch = charge(
            model,
            lots=ex.quantity,
            price=ex.price,
            contract_size=contract,
            liquidity=ex.liquidity,
            base_currency=base,
            quote_currency=quote,
            order_raw=o.commission_raw,
            order_charged=o.commission_charged,
        )
        o.commission_raw, o.commission_charged = ch.order_raw, ch.order_charged
        realized, position_id = self._apply_position(c.symbol, c.side, ex.quantity, ex.price, None)
        fee_quote = ch.amount * ex.price if ch.asset == base and base != quote else ch.amount
        try:
            cash = self._to_account(realized * contract - fee_quote, quote)
        except LookupError:
            cash = realized * contract - fee_quote  # unreachable for a placed order (checked on arrival)
        self._cash += cash
        reference = o.reference_price if o.reference_price is not None else ex.price
        o.fills.append(
            PaperFill(
                deal_id=self._next("deal"),
                quantity=ex.quantity,
                price=ex.price,
                liquidity=ex.liquidity,
                ts_ns=ts_ns,
                commission=ch.amount,
                commission_asset=ch.asset,
                reference_price=reference,
                slippage_bps=slippage_bps(c.side, ex.price, reference),
                position_id=position_id,
                cash=cash,
            )
        )
        o.filled += ex.quantity
        o.state = BrokerOrderState.FILLED if o.filled == c.quantity else BrokerOrderState.PARTIALLY_FILLED
        self._touch(o)
        if c.stop_loss is not None or c.take_profit is not None:
            self._attach(o)
        if o.parent is not None:
            self._one_cancels_other(o)

    def _apply_position(
        self, symbol: str, side: Side, qty: Decimal, price: Decimal, position_id: str | None
    ) -> tuple[Decimal, str]:
        """Net the fill into the symbol's position; the realized PnL in price units * lots, and the position id
        the fill belongs to (a new ticket when it opens a position or flips one)."""
        pos = self._positions.setdefault(symbol, _Position())
        signed = qty * side.sign
        new = pos.qty + signed
        realized = ZERO
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            if pos.qty == 0:
                pos.position_id = position_id or self._next("position")
            pos.avg = (pos.qty * pos.avg + signed * price) / new
        else:
            closed = min(abs(pos.qty), qty)
            realized = closed * (price - pos.avg) * (1 if pos.qty > 0 else -1)
            if new == 0:
                pos.avg = ZERO
            elif (new > 0) != (pos.qty > 0):
                pos.avg = price
                pos.position_id = position_id or self._next("position")
        pos.qty = new
        return realized, pos.position_id

    # ------------------------------------------------------------------------------ attached orders

    def _attach(self, parent: PaperOrder) -> None:
        """Stop-loss and take-profit of ``parent`` as working reduce-only orders for what it has filled."""
        c = parent.cmd
        for kind, price in (("sl", c.stop_loss), ("tp", c.take_profit)):
            if price is None:
                continue
            coid = f"{c.client_order_id}-{kind}"
            child = self._orders.get(coid)
            if child is not None:
                if child.working:
                    child.cmd = msgspec.structs.replace(child.cmd, quantity=parent.filled)
                    self._touch(child)
                continue
            cmd = attached_command(c, kind, parent.filled)
            child = PaperOrder(
                cmd=cmd, broker_order_id=self._next("order"), accepted_ns=self.clock(), parent=c.client_order_id
            )
            self._orders[coid] = child
            self._by_broker_id[child.broker_order_id] = child
            parent.children.append(coid)
            self._touch(child)

    def _one_cancels_other(self, child: PaperOrder) -> None:
        """A filled SL or TP takes the same quantity off its sibling (canceled once nothing is left)."""
        parent = self._orders.get(child.parent or "")
        if parent is None:
            return
        for coid in parent.children:
            sib = self._orders[coid]
            if sib is child or not sib.working:
                continue
            left = child.leaves
            if left <= 0:
                sib.state = BrokerOrderState.CANCELED
                sib.reason = f"one-cancels-other: {child.coid} filled"
            else:
                sib.cmd = msgspec.structs.replace(sib.cmd, quantity=sib.filled + left)
            self._touch(sib)

    # ------------------------------------------------------------------------------ the market moves

    async def quotes(self) -> AsyncIterator[Quote]:
        """The venue's market: every ``quote_interval_s`` the feed steps; each new book first expires, triggers
        and fills the working orders of its symbol (:meth:`on_book`), then its quote is yielded for publishing
        (the changed orders wait in :meth:`take_changes`)."""
        while True:
            for book in self.feed.step():
                try:
                    await self.on_book(book)
                except Exception as exc:  # the state store did not answer: kept unsaved, saved by a later step
                    log.warning("venue state not saved; retried with the next step", error=repr(exc))
                yield book_quote(self.broker_id, book)
            if self.feed.steps % MARKS_EVERY_STEPS == 0:
                self.prune_finished()
                with contextlib.suppress(Exception):  # the next time, then; the orders' own saves carry them too
                    await self.save_marks()
            await asyncio.sleep(self.quote_interval_s)

    def prune_finished(self) -> int:
        """Forget finished orders whose command can no longer arrive (and that are reported and saved): memory
        holds working orders and recent history, not every order ever placed. The store keeps them."""
        now = self.clock()
        forgotten = 0
        for coid, due in list(self._finished.items()):
            if due > now:
                break  # due times follow the order they finished in, closely enough to stop here
            if coid in self._unreported or coid in self._unsaved or coid in self._placing:
                continue  # the next round
            del self._finished[coid]
            o = self._orders.pop(coid, None)
            if o is not None:
                self._by_broker_id.pop(o.broker_order_id, None)
                forgotten += 1
        return forgotten

    async def save_marks(self) -> None:
        """Store the market's last mids (with the tickets), so a restart continues from them."""
        async with self._save_lock:
            self.tickets.marks = self.feed.marks()
            await self.store.save(encode_tickets(self.tickets), {})

    async def instruments(self) -> dict[str, InstrumentOverride]:
        """The symbols of the feed with their tick sizes."""
        return {s: InstrumentOverride(tick_size=f.tick_size) for s, f in self.feed.specs.items()}

    async def on_book(self, book: OrderBook) -> list[PaperOrder]:
        """Expire, trigger and fill the working orders of ``book``'s symbol (oldest order first); returns the
        orders that changed (also kept for :meth:`unreported`)."""
        self._recent = {}
        working = self._working.get(book.symbol, {})
        for o in [o for o in working.values() if not o.working]:  # finished by a path that did not touch it
            del working[o.coid]
        for o in sorted(working.values(), key=lambda o: int(o.broker_order_id)):
            if not o.working:  # canceled by a sibling meanwhile
                continue
            c = o.cmd
            if o.expire_ns is not None and book.ts_ns >= o.expire_ns:
                o.state = BrokerOrderState.EXPIRED
                o.reason = f"{c.time_in_force.value} order expired"
                self._touch(o)
                continue
            if c.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and not o.triggered:
                assert c.stop_price is not None
                if stop_triggered(book, c.side, c.stop_price):
                    self._trigger(o, book)
                continue
            if c.limit_price is None:
                continue
            ex = match_resting(book, c.side, o.leaves, c.limit_price)
            if ex is not None:
                if o.reference_price is None:
                    o.reference_price = c.reference_price or book_mid(book)
                self._fill(o, ex, book.ts_ns)
        changed = [self._orders[c] for c in self._recent]
        await self._save()
        return changed

    # ------------------------------------------------------------------------------ other requests

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        o = self._find(client_order_id, broker_order_id)
        if o.working:
            o.state = BrokerOrderState.CANCELED
            o.reason = "canceled on request"
            self._touch(o)
            await self._save()
        return o.view()

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
        if stop_loss is not None or take_profit is not None:
            raise ModificationError("this venue does not change an order's stop-loss / take-profit")
        o = self._find(client_order_id, None)
        if not o.working:
            raise ModificationError(f"order {client_order_id} is {o.state.value}, it cannot be modified")
        c = o.cmd
        changes: dict[str, Decimal] = {}
        if quantity is not None:
            if quantity <= o.filled:
                raise ModificationError(f"quantity {quantity} is not above the filled {o.filled}")
            if quantity > c.quantity:  # a larger order needs the margin for what it adds, as a new one would
                try:
                    self._check_margin(
                        msgspec.structs.replace(c, quantity=quantity - c.quantity), self.feed.book(c.symbol)
                    )
                except (OrderError, InsufficientFundsError) as exc:
                    raise ModificationError(f"quantity {quantity}: {exc}") from None
            changes["quantity"] = quantity
        if limit_price is not None:
            if c.order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT) or limit_price <= 0:
                raise ModificationError(f"a {c.order_type.value} order cannot take limit price {limit_price}")
            changes["limit_price"] = limit_price
        if stop_price is not None:
            if c.order_type not in (OrderType.STOP, OrderType.STOP_LIMIT) or o.triggered or stop_price <= 0:
                raise ModificationError(f"stop price {stop_price} cannot be set on this order")
            changes["stop_price"] = stop_price
        o.cmd = msgspec.structs.replace(c, **changes)
        self._touch(o)
        await self._save()
        return o.view()

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        return self._find(client_order_id, broker_order_id).view()

    def _find(self, client_order_id: str, broker_order_id: str | None) -> PaperOrder:
        o = self._orders.get(client_order_id) or (self._by_broker_id.get(broker_order_id) if broker_order_id else None)
        if o is None:
            raise OrderNotFoundError(f"order {client_order_id} is not known at {self.broker_id}")
        return o

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        if symbol not in self.feed.specs:
            raise SymbolNotFoundError(f"unknown symbol {symbol!r} at {self.broker_id}")
        book = self.feed.book(symbol)
        return msgspec.structs.replace(book, bids=book.bids[:depth], asks=book.asks[:depth])

    async def get_positions(self) -> list[BrokerPosition]:
        return [
            BrokerPosition(symbol=sym, quantity=p.qty, avg_price=p.avg, position_id=p.position_id)
            for sym, p in sorted(self._positions.items())
            if p.qty != 0
        ]

    def _balance(self) -> Balance:
        balance = self.deposit + self._cash
        unrealized = ZERO
        margin = ZERO
        for sym, p in self._positions.items():
            if not p.qty:
                continue
            book = self.feed.book(sym)
            mark = book.bids[0].price if p.qty > 0 else book.asks[0].price
            _, quote = self._currencies(sym)
            unrealized += self._to_account((mark - p.avg) * p.qty * self._contract(sym), quote)
            margin += abs(p.qty) * self._margin_per_lot(sym, mark)
        equity = balance + unrealized
        return Balance(
            currency=self.currency, balance=balance, equity=equity, free_margin=equity - margin, margin_used=margin
        )

    async def get_balance(self) -> Balance:
        return self._balance()


# ------------------------------------------------------------------------------------------ reports


def paper_reports(o: PaperOrder) -> list[ExecEvent]:
    """Every report ``o`` has earned so far, with deterministic ids: accepted, triggered (stops), one fill per deal
    (with its commission, reference price, slippage and position id) and its terminal state with the reason."""
    events = reports_for(o.cmd, o.view())
    by_deal = {f.deal_id: f for f in o.fills}
    out: list[ExecEvent] = []
    for event in events:
        if isinstance(event, OrderFilled):
            f = by_deal[event.fill_id]
            event = msgspec.structs.replace(
                event,
                reference_price=f.reference_price,
                slippage_bps=f.slippage_bps,
                position_id=f.position_id,
                ts_ns=f.ts_ns or event.ts_ns,
            )
        elif isinstance(event, OrderCanceled) and o.reason:
            event = msgspec.structs.replace(event, reason=o.reason)
        if o.parent is not None:
            event = msgspec.structs.replace(event, parent_client_order_id=o.parent)
        out.append(event)
        if event is out[0] and o.triggered:
            c = o.cmd
            out.append(
                OrderTriggered(
                    event_id=order_event_id(c.client_order_id, "triggered"),
                    client_order_id=c.client_order_id,
                    intent_id=c.intent_id,
                    strategy_id=c.strategy_id,
                    account=c.account,
                    broker_id=c.broker_id,
                    symbol=c.symbol,
                    intent_ts_ns=c.intent_ts_ns,
                    broker_order_id=o.broker_order_id,
                    parent_client_order_id=o.parent,
                )
            )
    return out
