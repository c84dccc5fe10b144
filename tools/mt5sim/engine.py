"""An MT5 trading account with MetaTrader 5's semantics, as the public MQL5-JSON-API expert advisor exposes it.

Pure and synchronous: the server (``tools.mt5sim.server``) feeds it requests (dicts decoded from the EA's JSON)
and sends what it returns. The EA's quirks are reproduced on purpose, since a simulator kinder than the real EA
proves nothing: tickets are cast to 32-bit integers on the way out; POSITIONS ids are integers and ORDERS ids
strings; the order comment is seen only in trade events; ``magic`` and ``deviation`` are ignored; on a hedging
account the upstream POSITIONS listing repeats the first position of a symbol; a TRADE without a known ``symbol``
pushes an error message before its reply; an unknown ``actionType`` pushes an error and then a failed reply.
Fills of pending orders, SL and TP happen on the server: like MT5 they produce no TRADE_TRANSACTION_REQUEST event.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

D = Decimal
ZERO = D(0)

RETCODES: dict[int, str] = {
    10004: "TRADE_RETCODE_REQUOTE", 10006: "TRADE_RETCODE_REJECT", 10007: "TRADE_RETCODE_CANCEL",
    10008: "TRADE_RETCODE_PLACED", 10009: "TRADE_RETCODE_DONE", 10010: "TRADE_RETCODE_DONE_PARTIAL",
    10011: "TRADE_RETCODE_ERROR", 10012: "TRADE_RETCODE_TIMEOUT", 10013: "TRADE_RETCODE_INVALID",
    10014: "TRADE_RETCODE_INVALID_VOLUME", 10015: "TRADE_RETCODE_INVALID_PRICE",
    10016: "TRADE_RETCODE_INVALID_STOPS", 10017: "TRADE_RETCODE_TRADE_DISABLED",
    10018: "TRADE_RETCODE_MARKET_CLOSED", 10019: "TRADE_RETCODE_NO_MONEY", 10020: "TRADE_RETCODE_PRICE_CHANGED",
    10021: "TRADE_RETCODE_PRICE_OFF", 10022: "TRADE_RETCODE_INVALID_EXPIRATION",
    10023: "TRADE_RETCODE_ORDER_CHANGED", 10024: "TRADE_RETCODE_TOO_MANY_REQUESTS",
    10025: "TRADE_RETCODE_NO_CHANGES", 10030: "TRADE_RETCODE_INVALID_FILL", 10031: "TRADE_RETCODE_CONNECTION",
    10035: "TRADE_RETCODE_INVALID_ORDER", 10036: "TRADE_RETCODE_POSITION_CLOSED",
    10038: "TRADE_RETCODE_INVALID_CLOSE_VOLUME",
}  # fmt: skip
ERRORS = {0: "ERR_SUCCESS", 4301: "ERR_MARKET_UNKNOWN_SYMBOL", 4753: "ERR_TRADE_POSITION_NOT_FOUND",
          4754: "ERR_TRADE_ORDER_NOT_FOUND", 65537: "ERR_DESERIALIZATION", 65538: "ERR_WRONG_ACTION",
          65539: "ERR_WRONG_ACTION_TYPE"}  # fmt: skip
DONE, PLACED = 10009, 10008


def int32(ticket: int) -> int:
    """The EA writes tickets through ``(int)``: 64-bit tickets wrap to signed 32 bits."""
    return (ticket + 2**31) % 2**32 - 2**31


@dataclass(frozen=True)
class SymbolSpec:
    calc_mode: str  # FOREX or CFD
    base: str
    quote: str
    digits: int
    contract_size: Decimal
    volume_min: Decimal = Decimal("0.01")
    volume_max: Decimal = Decimal("100")
    volume_step: Decimal = Decimal("0.01")

    @property
    def point(self) -> Decimal:
        return D(1).scaleb(-self.digits)


SPECS: dict[str, tuple[SymbolSpec, Decimal]] = {
    "EURUSD": (SymbolSpec("FOREX", "EUR", "USD", 5, D(100000)), D("1.08500")),
    "GBPUSD": (SymbolSpec("FOREX", "GBP", "USD", 5, D(100000)), D("1.27000")),
    "USDJPY": (SymbolSpec("FOREX", "USD", "JPY", 3, D(100000)), D("151.370")),
    "USDCHF": (SymbolSpec("FOREX", "USD", "CHF", 5, D(100000)), D("0.90000")),
    "AUDUSD": (SymbolSpec("FOREX", "AUD", "USD", 5, D(100000)), D("0.65500")),
    "US500": (SymbolSpec("CFD", "USD", "USD", 2, D(1), D("0.10"), D("50"), D("0.10")), D("5200.00")),
}
SPREAD_POINTS = {"EURUSD": 10, "GBPUSD": 14, "USDJPY": 12, "USDCHF": 15, "AUDUSD": 12, "US500": 50}

PENDING = ("ORDER_TYPE_BUY_LIMIT", "ORDER_TYPE_SELL_LIMIT", "ORDER_TYPE_BUY_STOP", "ORDER_TYPE_SELL_STOP")


@dataclass
class Order:
    ticket: int
    symbol: str
    type: str
    volume: Decimal
    price: Decimal
    sl: Decimal
    tp: Decimal
    comment: str
    time_setup: int
    expiration: int = 0


@dataclass
class Position:
    id: int
    symbol: str
    buy: bool
    volume: Decimal
    price: Decimal
    sl: Decimal
    tp: Decimal
    time: int
    comment: str


@dataclass
class Deal:
    ticket: int
    order: int
    time: int
    price: Decimal
    volume: Decimal
    symbol: str
    buy: bool
    entry: int  # 0 in, 1 out, 2 in/out
    profit: Decimal
    commission: Decimal
    position_id: int


@dataclass
class Outcome:
    """What one request produced: messages for the data socket (in order) and for the trade-events socket."""

    data: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class Account:
    """One MT5 account (netting or hedging) on a moving market."""

    def __init__(
        self,
        *,
        hedging: bool = False,
        currency: str = "USD",
        balance: Decimal = D(100000),
        leverage: Decimal = D(100),
        commission_per_lot: Decimal = D("3.5"),
        seed: int = 7,
        ticket_base: int = 100_000_001,
        stock: bool = False,
        single_socket: bool = False,
    ) -> None:
        self.hedging = hedging
        self.currency = currency
        self.balance = balance
        self.leverage = leverage
        self.commission_per_lot = commission_per_lot
        self.stock = stock  # the upstream EA exactly: no documented extensions
        self.single_socket = single_socket  # the variant fixes the hedging listing
        self.rng = random.Random(seed)
        self.specs = {s: spec for s, (spec, _) in SPECS.items()}
        self.bid: dict[str, Decimal] = {}
        self.ask: dict[str, Decimal] = {}
        for s, (spec, mid) in SPECS.items():
            half = spec.point * SPREAD_POINTS[s] / 2
            self.bid[s], self.ask[s] = self._q(s, mid - half), self._q(s, mid + half)
        self._next = ticket_base  # orders and positions share MT5's ticket sequence; deals have their own
        self._next_deal = ticket_base + 50_000_000
        self.orders: dict[int, Order] = {}
        self.positions: dict[int, Position] = {}
        self.deals: list[Deal] = []
        self.inject: list[int] = []  # retcodes the next TRADE requests answer with (tests, demos)
        self.market_closed: set[str] = set()
        self.trade_disabled = False
        self.requests = 0

    # ----------------------------------------------------------------------------- market

    def _q(self, symbol: str, price: Decimal) -> Decimal:
        return price.quantize(self.specs[symbol].point, rounding=ROUND_HALF_EVEN)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def step(self) -> list[Deal]:
        """Move every price a few points (seeded), then trigger pending orders, SL and TP."""
        for s, spec in self.specs.items():
            move = spec.point * self.rng.randint(-3, 3)
            self.bid[s] += move
            self.ask[s] += move
        return self.trigger()

    def set_price(self, symbol: str, bid: Decimal, ask: Decimal) -> list[Deal]:
        self.bid[symbol], self.ask[symbol] = bid, ask
        return self.trigger()

    def trigger(self) -> list[Deal]:
        out: list[Deal] = []
        for o in list(self.orders.values()):
            bid, ask = self.bid[o.symbol], self.ask[o.symbol]
            hit = {
                "ORDER_TYPE_BUY_LIMIT": ask <= o.price,
                "ORDER_TYPE_SELL_LIMIT": bid >= o.price,
                "ORDER_TYPE_BUY_STOP": ask >= o.price,
                "ORDER_TYPE_SELL_STOP": bid <= o.price,
            }[o.type]
            if hit:
                del self.orders[o.ticket]
                buy = o.type.startswith("ORDER_TYPE_BUY")
                price = o.price if "LIMIT" in o.type else (ask if buy else bid)
                out += self._deal(o.ticket, o.symbol, buy, o.volume, price, o.sl, o.tp, o.comment)
            elif o.expiration and o.expiration <= self.now_ms() // 1000:
                del self.orders[o.ticket]
        for p in list(self.positions.values()):
            close = self.bid[p.symbol] if p.buy else self.ask[p.symbol]
            sl_hit = p.sl and (close <= p.sl if p.buy else close >= p.sl)
            tp_hit = p.tp and (close >= p.tp if p.buy else close <= p.tp)
            if sl_hit or tp_hit:
                out += self._close(p, p.volume, self._new_ticket())
        return out

    # ----------------------------------------------------------------------------- money

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

    def profit_of(self, p: Position) -> Decimal:
        close = self.bid[p.symbol] if p.buy else self.ask[p.symbol]
        diff = (close - p.price) if p.buy else (p.price - close)
        return self.to_account(diff * p.volume * self.specs[p.symbol].contract_size, self.specs[p.symbol].quote)

    def margin(self) -> Decimal:
        if self.hedging:
            return sum((self.margin_for(p.symbol, p.volume, p.price) for p in self.positions.values()), ZERO)
        return sum((self.margin_for(p.symbol, p.volume, p.price) for p in self.positions.values()), ZERO)

    def equity(self) -> Decimal:
        return self.balance + sum((self.profit_of(p) for p in self.positions.values()), ZERO)

    # ----------------------------------------------------------------------------- tickets

    def _new_ticket(self) -> int:
        self._next += 1
        return self._next - 1

    def _new_deal(self) -> int:
        self._next_deal += 1
        return self._next_deal - 1

    def _find(self, table: dict[int, Any], wire_id: int) -> Any:
        """Tickets come back as the 32-bit integers the EA wrote; find the ticket they stand for."""
        for ticket, item in table.items():
            if int32(ticket) == wire_id:
                return item
        return None

    # ----------------------------------------------------------------------------- deals

    def _deal(
        self,
        order: int,
        symbol: str,
        buy: bool,
        volume: Decimal,
        price: Decimal,
        sl: Decimal,
        tp: Decimal,
        comment: str,
    ) -> list[Deal]:
        commission = -(self.commission_per_lot * volume)
        self.balance += commission
        if not self.hedging:
            pos = next((p for p in self.positions.values() if p.symbol == symbol), None)
            if pos is not None and pos.buy != buy:  # reduces, closes or flips the netting position
                closing = min(volume, pos.volume)
                out = self._close(pos, closing, order, price=price, commission=commission)
                rest = volume - closing
                if rest > 0:  # a flip is one deal (entry in/out) opening the rest as a new position
                    now = self.now_ms() // 1000
                    self.positions[order] = Position(order, symbol, buy, rest, price, sl, tp, now, comment)
                    out[0].entry, out[0].volume, out[0].position_id = 2, volume, order
                return out
            if pos is not None:  # adds: volume-weighted price
                total = pos.volume + volume
                pos.price = self._q(symbol, (pos.price * pos.volume + price * volume) / total)
                pos.volume = total
                deal = Deal(self._new_deal(), order, self.now_ms() // 1000, price, volume, symbol, buy, 0, ZERO,
                            commission, pos.id)  # fmt: skip
                self.deals.append(deal)
                return [deal]
        return self._open(order, symbol, buy, volume, price, sl, tp, comment, commission)

    def _open(
        self, order: int, symbol: str, buy: bool, volume: Decimal, price: Decimal, sl: Decimal, tp: Decimal,
        comment: str, commission: Decimal,
    ) -> list[Deal]:  # fmt: skip
        now = self.now_ms() // 1000
        self.positions[order] = Position(order, symbol, buy, volume, price, sl, tp, now, comment)
        deal = Deal(self._new_deal(), order, now, price, volume, symbol, buy, 0, ZERO, commission, order)
        self.deals.append(deal)
        return [deal]

    def _close(
        self, pos: Position, volume: Decimal, order: int, *, price: Decimal | None = None, commission: Decimal = ZERO
    ) -> list[Deal]:
        close = price if price is not None else (self.bid[pos.symbol] if pos.buy else self.ask[pos.symbol])
        if commission == ZERO:
            commission = -(self.commission_per_lot * volume)
            self.balance += commission
        diff = (close - pos.price) if pos.buy else (pos.price - close)
        spec = self.specs[pos.symbol]
        profit = self.to_account(diff * volume * spec.contract_size, spec.quote).quantize(D("0.01"))
        self.balance += profit
        pos.volume -= volume
        if pos.volume <= 0:
            del self.positions[pos.id]
        deal = Deal(self._new_deal(), order, self.now_ms() // 1000, close, volume, pos.symbol, not pos.buy, 1, profit,
                    commission, pos.id)  # fmt: skip
        self.deals.append(deal)
        return [deal]

    # ----------------------------------------------------------------------------- requests

    def handle(self, req: dict[str, Any]) -> Outcome:
        """One decoded request -> what the EA pushes on the data and trade-event sockets."""
        self.requests += 1
        action = req.get("action")
        out = Outcome()
        if action == "ACCOUNT":
            out.data.append(self._account())
        elif action == "BALANCE":
            out.data.append({k: v for k, v in self._account().items() if k in ("balance", "equity", "margin",
                                                                                "margin_free")})  # fmt: skip
        elif action == "POSITIONS":
            out.data.append(self._positions())
        elif action == "ORDERS":
            out.data.append(self._orders())
        elif action == "HISTORY" and req.get("actionType") == "TRADES":
            out.data.append(self._trades(req))
        elif action == "CONFIG":
            ok = req.get("symbol") in self.specs
            out.data.append(action_error(0 if ok else 4301, "ScriptConfiguration"))
        elif action == "RESET":
            out.data.append(action_error(0, "ResetSubscriptionsAndIndicators"))
        elif action == "TRADE":
            self._trade(req, out)
        elif action == "SYMBOLINFO" and not self.stock:
            out.data.append(self._symbolinfo(req))
        elif action == "BOOK" and not self.stock:
            out.data.append(self._book(req))
        else:
            out.data.append(action_error(65538, "RequestHandler"))
        return out

    def _account(self) -> dict[str, Any]:
        margin = self.margin()
        equity = self.equity()
        return {
            "error": False, "broker": "ordermesh simulator", "currency": self.currency, "server": "mt5-sim",
            "trading_allowed": 1, "bot_trading": 1, "balance": self.balance, "equity": equity, "margin": margin,
            "margin_free": equity - margin, "margin_level": (equity / margin * 100) if margin else ZERO,
        }  # fmt: skip

    def _positions(self) -> dict[str, Any]:
        data: dict[str, Any] = {"positions": []}
        if not self.positions:
            data["positions"].append({})  # the EA adds an empty object when there is nothing
            return data
        listed = list(self.positions.values())
        for i, p in enumerate(listed):
            if self.hedging and not self.single_socket:
                # upstream selects by symbol: every position of a symbol shows as its first one
                p = next(q for q in listed if q.symbol == listed[i].symbol)
            data["error"] = False
            data["positions"].append({
                "id": int32(p.id), "magic": 0, "symbol": p.symbol,
                "type": "POSITION_TYPE_BUY" if p.buy else "POSITION_TYPE_SELL", "time_setup": p.time,
                "open": p.price, "stoploss": p.sl, "takeprofit": p.tp, "volume": p.volume,
            })  # fmt: skip
        return data

    def _orders(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": False, "orders": []}
        if not self.orders:
            data["orders"].append({})
        for o in self.orders.values():
            data["orders"].append({
                "id": str(int32(o.ticket)), "magic": 0, "symbol": o.symbol, "type": o.type,
                "time_setup": o.time_setup, "open": o.price, "stoploss": o.sl, "takeprofit": o.tp,
                "volume": o.volume,
            })  # fmt: skip
        return data

    def _trades(self, req: dict[str, Any]) -> dict[str, Any]:
        since = int(req.get("fromDate") or 0)
        trades = []
        for d in self.deals:
            if d.time < since:
                continue
            row: dict[str, Any] = {
                "ticket": int32(d.ticket), "time": d.time, "price": d.price, "volume": d.volume, "symbol": d.symbol,
                "type": "Buy" if d.buy else "Sell", "entry": d.entry, "profit": d.profit,
            }  # fmt: skip
            if not self.stock:  # documented extension: the deal's order, position and commission
                row.update(order=int32(d.order), position_id=int32(d.position_id), commission=d.commission)
            trades.append(row)
        return {"trades": trades or [{}]}

    def _symbolinfo(self, req: dict[str, Any]) -> dict[str, Any]:
        symbol = req.get("symbol")
        spec = self.specs.get(symbol or "")
        if spec is None:
            return action_error(4301, "SymbolInfo")
        return {
            "error": False, "symbol": symbol, "digits": spec.digits, "point": spec.point,
            "contract_size": spec.contract_size, "volume_min": spec.volume_min, "volume_max": spec.volume_max,
            "volume_step": spec.volume_step, "tick_value": self.to_account(spec.point * spec.contract_size, spec.quote),
            "calc_mode": spec.calc_mode, "currency_base": spec.base, "currency_profit": spec.quote,
            "leverage": self.leverage,
        }  # fmt: skip

    def _book(self, req: dict[str, Any]) -> dict[str, Any]:
        symbol = req.get("symbol") or ""
        if symbol not in self.specs:
            return action_error(4301, "MarketBook")
        depth = max(1, min(int(req.get("depth") or 5), 10))
        point = self.specs[symbol].point
        bids = [[self.bid[symbol] - point * i, D(1 + i)] for i in range(depth)]
        asks = [[self.ask[symbol] + point * i, D(1 + i)] for i in range(depth)]
        return {"error": False, "symbol": symbol, "bids": bids, "asks": asks}

    # ----------------------------------------------------------------------------- trading

    def _trade(self, req: dict[str, Any], out: Outcome) -> None:
        symbol = req.get("symbol") or ""
        kind = req.get("actionType") or ""
        if symbol not in self.specs:  # SymbolInfoString fails -> CheckError pushes an error first
            out.data.append(action_error(4301, "TradingModule"))
        known = {"ORDER_TYPE_BUY", "ORDER_TYPE_SELL", *PENDING, "POSITION_MODIFY", "POSITION_PARTIAL",
                 "POSITION_CLOSE_ID", "POSITION_CLOSE_SYMBOL", "ORDER_MODIFY", "ORDER_CANCEL"}  # fmt: skip
        if kind not in known:
            out.data.append(action_error(65538, "TradingModule"))
            out.data.append(self._reply(10013, 0, ZERO, ZERO, symbol, error=True))
            return
        retcode, ticket, volume, price, deal = self._execute(req, symbol, kind)
        reply = self._reply(retcode, ticket, volume, price, symbol, error=retcode not in (DONE, PLACED))
        if not self.stock and deal:
            reply["deal"] = int32(deal)  # documented extension: the line upstream has commented out
        out.data.append(reply)
        if retcode != 10031:  # a request the trade server saw: OnTradeTransaction(TRADE_TRANSACTION_REQUEST)
            out.events.append(self._event(req, symbol, kind, retcode, ticket, volume, price))

    def _reply(
        self, retcode: int, ticket: int, volume: Decimal, price: Decimal, symbol: str, *, error: bool
    ) -> dict[str, Any]:
        return {
            "error": error, "retcode": retcode, "desription": RETCODES.get(retcode, f"TRADE_RETCODE_UNKNOWN={retcode}"),
            "order": int32(ticket), "volume": volume, "price": price, "bid": self.bid.get(symbol, ZERO),
            "ask": self.ask.get(symbol, ZERO), "function": "TradingModule",
        }  # fmt: skip

    def _event(
        self, req: dict[str, Any], symbol: str, kind: str, retcode: int, ticket: int, volume: Decimal, price: Decimal
    ) -> dict[str, Any]:
        pending = kind in PENDING
        request = {
            "action": "TRADE_ACTION_PENDING" if pending else "TRADE_ACTION_DEAL", "order": 0, "symbol": symbol,
            "volume": dec(req.get("volume")), "price": dec(req.get("price")) if pending else price,
            "stoplimit": ZERO, "sl": dec(req.get("stoploss")), "tp": dec(req.get("takeprofit")), "deviation": 0,
            "type": kind if kind.startswith("ORDER_TYPE") else "ORDER_TYPE_BUY", "type_filling": "ORDER_FILLING_FOK",
            "type_time": "ORDER_TIME_GTC", "expiration": int(req.get("expiration") or 0),
            # the EA passes no comment to CTrade's position calls: a close is never named by our comment
            "comment": None if kind.startswith("POSITION_") else req.get("comment") or None,
            "position": int32(int(req.get("id") or 0)), "position_by": 0,
        }  # fmt: skip
        result = {
            "retcode": retcode, "result": RETCODES.get(retcode, f"TRADE_RETCODE_UNKNOWN={retcode}"),
            "deal": int32(ticket), "order": int32(ticket),  # upstream writes the order ticket as "deal" too
            "volume": volume, "price": price, "comment": None, "request_id": self.requests, "retcode_external": 0,
        }  # fmt: skip
        return {"request": request, "result": result}

    def _execute(self, req: dict[str, Any], symbol: str, kind: str) -> tuple[int, int, Decimal, Decimal, int]:
        """(retcode, order ticket, volume, price, deal ticket)."""
        if self.inject:
            return self.inject.pop(0), 0, ZERO, ZERO, 0
        if symbol not in self.specs:
            return 10013, 0, ZERO, ZERO, 0
        if self.trade_disabled:
            return 10017, 0, ZERO, ZERO, 0
        if symbol in self.market_closed:
            return 10018, 0, ZERO, ZERO, 0
        spec = self.specs[symbol]
        volume = dec(req.get("volume"))
        sl, tp = dec(req.get("stoploss")), dec(req.get("takeprofit"))
        comment = (req.get("comment") or "")[:31]
        bid, ask = self.bid[symbol], self.ask[symbol]
        wire_id = int(req.get("id") or 0)
        if kind in ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL") or kind in PENDING:
            if not spec.volume_min <= volume <= spec.volume_max or volume % spec.volume_step:
                return 10014, 0, ZERO, ZERO, 0
            buy = kind.startswith("ORDER_TYPE_BUY")
            if kind in PENDING:
                price = self._q(symbol, dec(req.get("price")))
                ok = {"ORDER_TYPE_BUY_LIMIT": price < ask, "ORDER_TYPE_SELL_LIMIT": price > bid,
                      "ORDER_TYPE_BUY_STOP": price > ask, "ORDER_TYPE_SELL_STOP": price < bid}[kind]  # fmt: skip
                if price <= 0 or not ok:
                    return 10015, 0, ZERO, ZERO, 0
            else:
                price = ask if buy else bid
            if (sl and (sl >= price if buy else sl <= price)) or (tp and (tp <= price if buy else tp >= price)):
                return 10016, 0, ZERO, ZERO, 0
            if self.margin_for(symbol, volume, price) > self.equity() - self.margin():
                return 10019, 0, ZERO, ZERO, 0
            ticket = self._new_ticket()
            if kind in PENDING:
                expiration = int(req.get("expiration") or 0)
                self.orders[ticket] = Order(ticket, symbol, kind, volume, price, sl, tp, comment,
                                            self.now_ms() // 1000, expiration)  # fmt: skip
                return PLACED, ticket, volume, price, 0
            deals = self._deal(ticket, symbol, buy, volume, price, sl, tp, comment)
            return DONE, ticket, volume, price, deals[0].ticket
        if kind == "ORDER_CANCEL":
            order = self._find(self.orders, wire_id)
            if order is None:
                return 10013, 0, ZERO, ZERO, 0
            del self.orders[order.ticket]
            return DONE, order.ticket, ZERO, ZERO, 0
        if kind == "ORDER_MODIFY":
            order = self._find(self.orders, wire_id)
            if order is None:
                return 10013, 0, ZERO, ZERO, 0
            price = self._q(order.symbol, dec(req.get("price")))
            if price == order.price and sl == order.sl and tp == order.tp:
                return 10025, 0, ZERO, ZERO, 0
            order.price, order.sl, order.tp = price, sl, tp
            return DONE, order.ticket, ZERO, price, 0
        pos = self._find(self.positions, wire_id)
        if kind == "POSITION_CLOSE_SYMBOL":
            pos = next((p for p in self.positions.values() if p.symbol == symbol), None)
        if pos is None:
            return 10013, 0, ZERO, ZERO, 0
        if kind == "POSITION_MODIFY":
            pos.sl, pos.tp = sl, tp
            return DONE, pos.id, ZERO, ZERO, 0
        closing = pos.volume if kind in ("POSITION_CLOSE_ID", "POSITION_CLOSE_SYMBOL") else volume
        if not 0 < closing <= pos.volume or closing % spec.volume_step:
            return 10038, 0, ZERO, ZERO, 0
        ticket = self._new_ticket()
        deals = self._close(pos, closing, ticket)
        return DONE, ticket, closing, deals[0].price, deals[0].ticket


def action_error(code: int, function: str) -> dict[str, Any]:
    return {"error": code != 0, "lastError": str(code), "description": ERRORS.get(code, f"ERR_CODE_UNKNOWN={code}"),
            "function": function}  # fmt: skip


def dec(value: object) -> Decimal:
    if value is None or value == "":
        return ZERO
    try:
        out = D(str(value))
    except ArithmeticError:
        return ZERO
    return out if out.is_finite() else ZERO


def dumps(value: Any) -> bytes:
    """JSON as the EA writes it: doubles with 5 decimals, empty strings as null."""
    return _dump(value).encode()


def _dump(v: Any) -> str:
    if v is None or v == "":
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Decimal):
        return f"{v:.5f}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        import json

        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ",".join(f'"{k}":{_dump(x)}' for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_dump(x) for x in v) + "]"
    raise TypeError(type(v))
