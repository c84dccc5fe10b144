"""The MT5 side of the simulator: one account on its trade server, and the market it trades in.

``Account.order_send`` is the trade server's answer to one ``MqlTradeRequest`` (what ``::OrderSend`` returns to
CTrade); the EA's code (``tools.mt5sim.ea``, ``tools.mt5sim.ctrade``) only ever reaches the account through it and
through the read functions (positions, orders, deals, quotes). The EA's source does not show how a trade server
validates, fills or prices; everything here is therefore a guess modelled on MT5's documented behaviour, except
what the MQL5 documentation states: POSITION_IDENTIFIER is the opening order's ticket and survives a netting
reversal while POSITION_TICKET becomes the reversing order's; PositionSelect(symbol) on a hedging account picks
the position with the lowest ticket; fills of pending orders and SL/TP happen on the server and are no
TRADE_TRANSACTION_REQUEST; every time (deal, order, position, tick) is the trade server's clock, UTC plus
``server_utc_offset_s``; an MT5 account's history starts with its deposit, a balance deal.
"""

from __future__ import annotations

import copy
import random
import time
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

D = Decimal
ZERO, CENT, HUNDRED = D(0), D("0.01"), D(100)
PLACED, DONE, DONE_PARTIAL, TIMEOUT, CONNECTION = 10008, 10009, 10010, 10012, 10031
SUCCESS = (PLACED, DONE, DONE_PARTIAL)  # OrderSend returns true (guess: it returns false for every other retcode)
DEALING = ("TRADE_ACTION_DEAL", "TRADE_ACTION_PENDING")  # what timeout_but_execute applies to
EXECUTED = "Request executed"  # MqlTradeResult.comment of an executed request (guess)


def int32(value: int) -> int:
    """MQL's ``(int)`` of a ``ulong``/``long``: the low 32 bits, signed."""
    return (value + 2**31) % 2**32 - 2**31


@dataclass(frozen=True)
class SymbolSpec:
    calc_mode: str  # FOREX or CFD
    base: str
    quote: str
    digits: int
    contract_size: Decimal
    description: str
    volume_min: Decimal = CENT
    volume_max: Decimal = HUNDRED
    volume_step: Decimal = CENT

    @property
    def point(self) -> Decimal:
        return D(1).scaleb(-self.digits)


SPECS: dict[str, tuple[SymbolSpec, Decimal, int]] = {  # spec, initial mid, spread in points (guesses)
    "EURUSD": (SymbolSpec("FOREX", "EUR", "USD", 5, D(100000), "Euro vs US Dollar"), D("1.08500"), 10),
    "GBPUSD": (SymbolSpec("FOREX", "GBP", "USD", 5, D(100000), "Great Britain Pound vs US Dollar"), D("1.27000"), 14),
    "USDJPY": (SymbolSpec("FOREX", "USD", "JPY", 3, D(100000), "US Dollar vs Japanese Yen"), D("151.370"), 12),
    "USDCHF": (SymbolSpec("FOREX", "USD", "CHF", 5, D(100000), "US Dollar vs Swiss Franc"), D("0.90000"), 15),
    "AUDUSD": (SymbolSpec("FOREX", "AUD", "USD", 5, D(100000), "Australian Dollar vs US Dollar"), D("0.65500"), 12),
    "USDCAD": (SymbolSpec("FOREX", "USD", "CAD", 5, D(100000), "US Dollar vs Canadian Dollar"), D("1.36000"), 15),
    "EURGBP": (SymbolSpec("FOREX", "EUR", "GBP", 5, D(100000), "Euro vs Great Britain Pound"), D("0.85400"), 12),
    "EURJPY": (SymbolSpec("FOREX", "EUR", "JPY", 3, D(100000), "Euro vs Japanese Yen"), D("164.200"), 15),
    "US500": (SymbolSpec("CFD", "USD", "USD", 2, D(1), "US 500 Cash Index", D("0.10"), D("50"), D("0.10")),
              D("5200.00"), 50),
}  # fmt: skip


@dataclass
class Order:
    ticket: int
    symbol: str
    type: str  # ENUM_ORDER_TYPE name
    volume: Decimal
    price: Decimal
    sl: Decimal
    tp: Decimal
    comment: str
    time_setup: int  # server seconds
    expiration: int = 0  # kept, never applied: the EA always sends ORDER_TIME_GTC
    filled: Decimal = ZERO  # executed so far; ORDER_VOLUME_INITIAL (``volume``) never changes


@dataclass
class Position:
    ticket: int  # POSITION_TICKET: the reversing order's ticket after a netting reversal
    identifier: int  # POSITION_IDENTIFIER: the opening order's ticket, for life
    symbol: str
    buy: bool
    volume: Decimal
    price: Decimal
    sl: Decimal
    tp: Decimal
    time: int  # POSITION_TIME, server seconds
    comment: str
    magic: int = 0


@dataclass
class Deal:
    ticket: int
    order: int
    time: int  # DEAL_TIME, server seconds
    type: str  # BUY, SELL or BALANCE (ENUM_DEAL_TYPE without the prefix)
    entry: int  # DEAL_ENTRY_IN 0, OUT 1, INOUT 2, OUT_BY 3
    price: Decimal
    volume: Decimal
    symbol: str
    profit: Decimal
    commission: Decimal = ZERO
    position_id: int = 0


@dataclass
class TradeRequest:
    """``MqlTradeRequest``, zeroed as ``CTrade::ClearStructures`` leaves it (enums by name)."""

    action: str = "0"  # ZeroMemory leaves action 0, which is no ENUM_TRADE_REQUEST_ACTIONS member
    magic: int = 0
    order: int = 0
    symbol: str = ""
    volume: Decimal = ZERO
    price: Decimal = ZERO
    stoplimit: Decimal = ZERO
    sl: Decimal = ZERO
    tp: Decimal = ZERO
    deviation: int = 0
    type: str = "ORDER_TYPE_BUY"
    type_filling: str = "ORDER_FILLING_FOK"
    type_time: str = "ORDER_TIME_GTC"
    expiration: int = 0
    comment: str = ""
    position: int = 0
    position_by: int = 0


@dataclass
class TradeResult:
    """``MqlTradeResult``."""

    retcode: int = 0
    deal: int = 0
    order: int = 0
    volume: Decimal = ZERO
    price: Decimal = ZERO
    bid: Decimal = ZERO
    ask: Decimal = ZERO
    comment: str = ""
    request_id: int = 0
    retcode_external: int = 0


@dataclass(frozen=True)
class Tick:
    time_msc: int  # server milliseconds
    bid: Decimal
    ask: Decimal


class Account:
    """One MT5 account (netting or hedging) on its trade server, on a moving market."""

    def __init__(
        self,
        *,
        hedging: bool = False,
        currency: str = "USD",
        balance: Decimal = D(100000),
        leverage: Decimal = HUNDRED,
        commission_per_lot: Decimal = D("3.5"),
        seed: int = 7,
        ticket_base: int = 100_000_001,
        pending_retcode: int = PLACED,
        server_utc_offset_s: int = 7200,
    ) -> None:
        self.hedging, self.currency, self.balance, self.leverage = hedging, currency, balance, leverage
        self.commission_per_lot = commission_per_lot
        self.pending_retcode = pending_retcode  # some trade servers answer a placed pending order 10009 DONE
        self.server_utc_offset_s = server_utc_offset_s  # trade servers usually run on UTC+2/+3
        self.company, self.server = "ordermesh simulator", "mt5-sim"
        # test hooks and switches
        self.inject: list[int] = []  # the next requests reaching the server answer these, unexecuted
        self.timeout_but_execute = 0  # the next N deals/placements execute, but answer 10012 TIMEOUT
        self.market_closed: set[str] = set()
        self.trade_disabled = False
        self.connected = True  # TERMINAL_CONNECTED: the terminal's link to the trade server
        self.rng = random.Random(seed)
        self.specs = {s: spec for s, (spec, _, _) in SPECS.items()}
        self.bid: dict[str, Decimal] = {}
        self.ask: dict[str, Decimal] = {}
        self.ticks: dict[str, deque[Tick]] = {s: deque(maxlen=20_000) for s in SPECS}
        for s, (spec, mid, spread) in SPECS.items():
            half = spec.point * spread / 2
            self._quote(s, self._q(s, mid - half), self._q(s, mid + half))
        self._next = ticket_base  # orders and positions share MT5's order tickets; deals have their own
        self._next_deal = ticket_base + 50_000_000
        self.orders: dict[int, Order] = {}
        self.positions: dict[int, Position] = {}  # by identifier, in opening order
        self.deals: list[Deal] = []
        self.transactions: list[tuple[TradeRequest, TradeResult]] = []  # TRADE_TRANSACTION_REQUEST, for the EA
        self.requests = 0  # requests the trade server answered (MqlTradeResult.request_id)
        if balance:
            self.deals.append(Deal(self._new_deal(), 0, self.server_time() - 86400, "BALANCE", 0, ZERO, ZERO, "",
                                   balance))  # fmt: skip

    # ----------------------------------------------------------------------------- clock and market

    def server_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.server_utc_offset_s * 1000

    def server_time(self) -> int:
        """The trade server's clock in seconds; also stands for ``TimeCurrent()`` (guess: quotes keep coming)."""
        return self.server_ms() // 1000

    def _q(self, symbol: str, price: Decimal) -> Decimal:
        return price.quantize(self.specs[symbol].point, rounding=ROUND_HALF_EVEN)

    def _quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        self.bid[symbol], self.ask[symbol] = bid, ask
        self.ticks[symbol].append(Tick(self.server_ms(), bid, ask))

    def tick(self, symbol: str) -> Tick | None:
        """``SymbolInfoTick``: the last tick (None for an unknown symbol)."""
        ticks = self.ticks.get(symbol)
        return ticks[-1] if ticks else None

    def step(self) -> list[Deal]:
        """Move every price a few points (seeded, guess), then let the server trigger orders, SL and TP."""
        for s, spec in self.specs.items():
            move = spec.point * self.rng.randint(-3, 3)
            if move:
                self._quote(s, self.bid[s] + move, self.ask[s] + move)
        return self.trigger()

    def set_price(self, symbol: str, bid: Decimal | str, ask: Decimal | str) -> list[Deal]:
        """A new tick for ``symbol``; pending orders, SL and TP trigger on the server."""
        self._quote(symbol, D(str(bid)), D(str(ask)))
        return self.trigger()

    def fill_partly(self, ticket: int, volume: Decimal | str) -> Deal:
        """Test hook: the trade server executes ``volume`` of the pending order ``ticket`` (at its price for a
        limit, at the market for a stop) and the rest keeps working. The order stays in ORDERS, still with its
        initial volume (the EA lists ORDER_VOLUME_INITIAL); no trade event (guess: how a server fills part of a
        pending order when liquidity is short)."""
        o = self.orders[ticket]
        volume = D(str(volume))
        if not ZERO < volume < o.volume - o.filled:
            raise ValueError(f"a partial fill leaves part of the order: {volume} of {o.volume - o.filled}")
        buy = o.type.startswith("ORDER_TYPE_BUY")
        price = o.price if "LIMIT" in o.type else (self.ask[o.symbol] if buy else self.bid[o.symbol])
        o.filled += volume
        return self._fill(o.ticket, o.symbol, buy, volume, price, o.sl, o.tp, o.comment)

    def trigger(self) -> list[Deal]:
        """Server-side fills (guess: limits fill at their price, stops and SL/TP at the market)."""
        out: list[Deal] = []
        for o in list(self.orders.values()):
            bid, ask = self.bid[o.symbol], self.ask[o.symbol]
            hit = {"ORDER_TYPE_BUY_LIMIT": ask <= o.price, "ORDER_TYPE_SELL_LIMIT": bid >= o.price,
                   "ORDER_TYPE_BUY_STOP": ask >= o.price, "ORDER_TYPE_SELL_STOP": bid <= o.price}[o.type]  # fmt: skip
            if not hit:
                continue
            del self.orders[o.ticket]
            buy = o.type.startswith("ORDER_TYPE_BUY")
            price = o.price if "LIMIT" in o.type else (ask if buy else bid)
            rest = o.volume - o.filled
            if self.margin_for(o.symbol, rest, price) <= self.margin_free():  # else canceled (guess)
                out.append(self._fill(o.ticket, o.symbol, buy, rest, price, o.sl, o.tp, o.comment))
        for p in list(self.positions.values()):
            close = self.bid[p.symbol] if p.buy else self.ask[p.symbol]
            sl_hit = p.sl and (close <= p.sl if p.buy else close >= p.sl)
            tp_hit = p.tp and (close >= p.tp if p.buy else close <= p.tp)
            if sl_hit or tp_hit:
                self.balance -= self.commission_per_lot * p.volume
                out.append(self._reduce(p, p.volume, close, self._new_ticket(), -(self.commission_per_lot * p.volume)))
        return out

    # ----------------------------------------------------------------------------- money (guesses)

    def to_account(self, amount: Decimal, currency: str) -> Decimal:
        if currency == self.currency:
            return amount
        direct, inverse = currency + self.currency, self.currency + currency
        if direct in self.bid:
            return amount * (self.bid[direct] + self.ask[direct]) / 2
        if inverse in self.bid:
            return amount / ((self.bid[inverse] + self.ask[inverse]) / 2)
        raise ValueError(f"no rate for {currency}/{self.currency}")

    def margin_for(self, symbol: str, volume: Decimal, price: Decimal) -> Decimal:
        spec = self.specs[symbol]
        if spec.calc_mode == "FOREX":  # lots x contract / leverage, in the base currency
            return self.to_account(volume * spec.contract_size / self.leverage, spec.base)
        return self.to_account(volume * spec.contract_size * price / self.leverage, spec.quote)

    def profit_of(self, p: Position, volume: Decimal | None = None, close: Decimal | None = None) -> Decimal:
        if close is None:
            close = self.bid[p.symbol] if p.buy else self.ask[p.symbol]
        diff = (close - p.price) if p.buy else (p.price - close)
        spec = self.specs[p.symbol]
        return self.to_account(diff * (p.volume if volume is None else volume) * spec.contract_size, spec.quote)

    def margin(self) -> Decimal:
        return sum((self.margin_for(p.symbol, p.volume, p.price) for p in self.positions.values()), ZERO)

    def equity(self) -> Decimal:
        return self.balance + sum((self.profit_of(p) for p in self.positions.values()), ZERO)

    def margin_free(self) -> Decimal:
        return self.equity() - self.margin()

    def margin_level(self) -> Decimal:
        margin = self.margin()
        return self.equity() / margin * 100 if margin else ZERO

    # ----------------------------------------------------------------------------- selection

    def position_by_ticket(self, ticket: int) -> Position | None:
        """``PositionSelectByTicket``."""
        return next((p for p in self.positions.values() if p.ticket == ticket), None)

    def position_by_symbol(self, symbol: str) -> Position | None:
        """``PositionSelect(symbol)``: on a hedging account the position with the lowest ticket (MQL5 docs)."""
        return min((p for p in self.positions.values() if p.symbol == symbol), key=lambda p: p.ticket, default=None)

    def first_position(self, symbol: str, magic: int = 0) -> Position | None:
        """The first position of ``symbol`` with ``magic`` in index order (``CTrade::SelectPosition``, hedging)."""
        return next((p for p in self.positions.values() if p.symbol == symbol and p.magic == magic), None)

    # ----------------------------------------------------------------------------- tickets and deals

    def _new_ticket(self) -> int:
        self._next += 1
        return self._next - 1

    def _new_deal(self) -> int:
        self._next_deal += 1
        return self._next_deal - 1

    def _deal(self, order: int, p: Position, buy: bool, entry: int, volume: Decimal, price: Decimal,
              profit: Decimal, commission: Decimal) -> Deal:  # fmt: skip
        deal = Deal(self._new_deal(), order, self.server_time(), "BUY" if buy else "SELL", entry, price, volume,
                    p.symbol, profit, commission, p.identifier)  # fmt: skip
        self.deals.append(deal)
        return deal

    def _fill(self, order: int, symbol: str, buy: bool, volume: Decimal, price: Decimal, sl: Decimal, tp: Decimal,
              comment: str, position: int = 0) -> Deal:  # fmt: skip
        """One deal of ``order``: opens, adds to, reduces, closes or (netting) reverses a position."""
        commission = -(self.commission_per_lot * volume)
        self.balance += commission
        pos = self.position_by_ticket(position) if position else None
        if pos is None and not self.hedging:
            pos = self.position_by_symbol(symbol)
        elif pos is None and not position:
            pos = self.positions.get(order)  # hedging: a later deal of an order adds to the position it opened
        if pos is None or (self.hedging and not position and pos.identifier != order):
            now = self.server_time()
            pos = self.positions[order] = Position(order, order, symbol, buy, volume, price, sl, tp, now, comment)
            return self._deal(order, pos, buy, 0, volume, price, ZERO, commission)
        if pos.buy == buy:  # netting: adds at the volume-weighted price
            pos.price = (pos.price * pos.volume + price * volume) / (pos.volume + volume)
            pos.volume += volume
            if sl or tp:
                pos.sl, pos.tp = sl, tp
            return self._deal(order, pos, buy, 0, volume, price, ZERO, commission)
        if volume <= pos.volume:
            return self._reduce(pos, volume, price, order, commission)
        profit = self.profit_of(pos, pos.volume, price).quantize(D("0.01"))  # a reversal: one in/out deal
        self.balance += profit
        pos.ticket, pos.buy, pos.volume, pos.price = order, buy, volume - pos.volume, price
        pos.sl, pos.tp, pos.time = sl, tp, self.server_time()
        return self._deal(order, pos, buy, 2, volume, price, profit, commission)

    def _reduce(self, pos: Position, volume: Decimal, price: Decimal, order: int, commission: Decimal) -> Deal:
        profit = self.profit_of(pos, volume, price).quantize(D("0.01"))
        self.balance += profit
        pos.volume -= volume
        if pos.volume <= 0:
            del self.positions[pos.identifier]
        return self._deal(order, pos, not pos.buy, 1, volume, price, profit, commission)

    # ----------------------------------------------------------------------------- the trade server

    def order_send(self, request: TradeRequest) -> tuple[bool, TradeResult]:
        """``::OrderSend``: (its return value, the result). A request the server answered is queued as a
        TRADE_TRANSACTION_REQUEST for the EA's ``OnTradeTransaction`` (guess: not when the terminal never got
        the answer, i.e. 10031 no connection and 10012 timeout)."""
        if not self.connected:
            return False, TradeResult(retcode=CONNECTION)
        self.requests += 1
        if self.inject:
            code = self.inject.pop(0)
            bid, ask = self.bid.get(request.symbol, ZERO), self.ask.get(request.symbol, ZERO)
            result = TradeResult(retcode=code, bid=bid, ask=ask, request_id=self.requests)
        else:
            result = self._execute(request)
            result.request_id = self.requests
            if self.timeout_but_execute and result.retcode in SUCCESS and request.action in DEALING:
                self.timeout_but_execute -= 1
                return False, TradeResult(retcode=TIMEOUT)
        if result.retcode not in (CONNECTION, TIMEOUT):
            self.transactions.append((copy.copy(request), result))
        return result.retcode in SUCCESS, result

    def _execute(self, r: TradeRequest) -> TradeResult:
        target = self.orders.get(r.order) if r.action in ("TRADE_ACTION_MODIFY", "TRADE_ACTION_REMOVE") else None
        symbol = target.symbol if target is not None else r.symbol
        if self.trade_disabled:
            return TradeResult(retcode=10017)
        if symbol in self.market_closed:
            return TradeResult(retcode=10018)
        handler = {"TRADE_ACTION_DEAL": self._market, "TRADE_ACTION_PENDING": self._place,
                   "TRADE_ACTION_SLTP": self._sltp}.get(r.action)  # fmt: skip
        if handler is not None:
            return handler(r)
        if target is None:  # MODIFY/REMOVE of an order that is not there (guess: invalid request)
            return TradeResult(retcode=10013)
        if r.action == "TRADE_ACTION_REMOVE":
            del self.orders[target.ticket]
            return TradeResult(retcode=DONE, order=target.ticket, comment=EXECUTED)
        return self._modify(target, r)

    def _bad_volume(self, symbol: str, volume: Decimal) -> bool:
        spec = self.specs[symbol]
        return not spec.volume_min <= volume <= spec.volume_max or bool(volume % spec.volume_step)

    def _off_tick(self, symbol: str, *prices: Decimal) -> bool:
        """A price that is not a multiple of the symbol's point (guess: the server rejects it)."""
        return any(p % self.specs[symbol].point for p in prices)

    def _bad_stops(self, symbol: str, buy: bool, ref: Decimal, sl: Decimal, tp: Decimal) -> bool:
        wrong_side = (sl and (sl >= ref if buy else sl <= ref)) or (tp and (tp <= ref if buy else tp >= ref))
        return bool(wrong_side) or self._off_tick(symbol, sl, tp)

    def _market(self, r: TradeRequest) -> TradeResult:
        if r.symbol not in self.specs:
            return TradeResult(retcode=10013)
        if self._bad_volume(r.symbol, r.volume):
            return TradeResult(retcode=10014)
        buy = r.type == "ORDER_TYPE_BUY"
        bid, ask = self.bid[r.symbol], self.ask[r.symbol]
        price = ask if buy else bid  # market execution: the request's price is not binding (guess)
        pos = self.position_by_ticket(r.position) if r.position else None
        if r.position and (pos is None or pos.symbol != r.symbol):
            return TradeResult(retcode=10036)
        if pos is not None and (pos.buy == buy or r.volume > pos.volume):
            return TradeResult(retcode=10013 if pos.buy == buy else 10038)
        netted = self.position_by_symbol(r.symbol) if not self.hedging else pos
        opening = r.volume if netted is None or netted.buy == buy else max(ZERO, r.volume - netted.volume)
        if opening and self._bad_stops(r.symbol, buy, bid if buy else ask, r.sl, r.tp):
            return TradeResult(retcode=10016)
        if opening and self.margin_for(r.symbol, opening, price) > self.margin_free():
            return TradeResult(retcode=10019)
        order = self._new_ticket()
        deal = self._fill(order, r.symbol, buy, r.volume, price, r.sl, r.tp, r.comment[:31], r.position)
        return TradeResult(DONE, deal.ticket, order, r.volume, price, bid, ask, EXECUTED)

    def _place(self, r: TradeRequest) -> TradeResult:
        if r.symbol not in self.specs:
            return TradeResult(retcode=10013)
        if self._bad_volume(r.symbol, r.volume):
            return TradeResult(retcode=10014)
        if not self._price_ok(r.symbol, r.type, r.price):
            return TradeResult(retcode=10015)
        if self._bad_stops(r.symbol, r.type.startswith("ORDER_TYPE_BUY"), r.price, r.sl, r.tp):
            return TradeResult(retcode=10016)
        ticket = self._new_ticket()
        self.orders[ticket] = Order(ticket, r.symbol, r.type, r.volume, r.price, r.sl, r.tp, r.comment[:31],
                                    self.server_time(), r.expiration)  # fmt: skip
        return TradeResult(self.pending_retcode, order=ticket, volume=r.volume, comment=EXECUTED)

    def _price_ok(self, symbol: str, order_type: str, price: Decimal) -> bool:
        bid, ask = self.bid[symbol], self.ask[symbol]
        sides = {"ORDER_TYPE_BUY_LIMIT": price < ask, "ORDER_TYPE_SELL_LIMIT": price > bid,
                 "ORDER_TYPE_BUY_STOP": price > ask, "ORDER_TYPE_SELL_STOP": price < bid}  # fmt: skip
        side = sides.get(order_type, False)
        return price > 0 and side and not self._off_tick(symbol, price)

    def _sltp(self, r: TradeRequest) -> TradeResult:
        pos = self.position_by_ticket(r.position) if r.position else self.position_by_symbol(r.symbol)
        if pos is None:
            return TradeResult(retcode=10036)
        close = self.bid[pos.symbol] if pos.buy else self.ask[pos.symbol]
        if self._bad_stops(pos.symbol, pos.buy, close, r.sl, r.tp):
            return TradeResult(retcode=10016)
        if (pos.sl, pos.tp) == (r.sl, r.tp):
            return TradeResult(retcode=10025)
        pos.sl, pos.tp = r.sl, r.tp
        return TradeResult(retcode=DONE, comment=EXECUTED)

    def _modify(self, o: Order, r: TradeRequest) -> TradeResult:
        if not self._price_ok(o.symbol, o.type, r.price):
            return TradeResult(retcode=10015)
        if self._bad_stops(o.symbol, o.type.startswith("ORDER_TYPE_BUY"), r.price, r.sl, r.tp):
            return TradeResult(retcode=10016)
        if (o.price, o.sl, o.tp) == (r.price, r.sl, r.tp):
            return TradeResult(retcode=10025)
        o.price, o.sl, o.tp, o.expiration = r.price, r.sl, r.tp, r.expiration
        return TradeResult(retcode=DONE, order=o.ticket, comment=EXECUTED)
