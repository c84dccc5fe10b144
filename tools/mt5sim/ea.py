"""The MQL5-JSON-API expert advisor, function by function (khramkov/MQL5-JSON-API at bcb6ab2: Experts/JsonAPI.mq5,
Include/MQL5-JSON_API/Broker.mqh and HistoryInfo.mqh). It turns one request into the EA's messages, serialized as
CJAVal writes them (:mod:`tools.mt5sim.cjaval`); the server (:mod:`tools.mt5sim.server`) owns the sockets.

``last_error`` plays MQL's ``_LastError``: ``ResetLastError`` at the start of ``RequestHandler``, set to 4301 by
``SymbolInfoString`` of an unknown symbol, to the user error by ``mSetUserError``, cleared by every
``InformClientSocket``; ``CheckError`` pushes an ``ActionDoneOrError`` message when it is set.

``single_socket`` is the ejtraderMT variant (ejtraderLabs/Metatrader5-Docker: Experts/ejtraderMT.mq5,
Include/ejtraderMT/Broker.mqh), one REP socket that carries everything: no ``OK``; the first message a request
produces is the reply (a REP socket sends once per request, so later ones, trade events included, are lost);
no live stream (``liveStream = false``); POSITIONS lists each ticket (``PositionGetTicket``) and adds ``error``
after the rows; ACCOUNT adds ``time`` (``string(TimeTradeServer())``); RESET is not an action there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tools.mt5sim.bars import Bar, closed_bar, copy_rates, timeframe_seconds
from tools.mt5sim.cjaval import UNDEF, JVal, Undefined, deserialize, serialize
from tools.mt5sim.ctrade import CTrade
from tools.mt5sim.engine import Account, Position, TradeRequest, TradeResult, int32
from tools.mt5sim.errors import error_desc, retcode_id
from tools.mt5sim.extensions import book, margin_mode_name, symbol_info

PENDING = ("ORDER_TYPE_BUY_LIMIT", "ORDER_TYPE_SELL_LIMIT", "ORDER_TYPE_BUY_STOP", "ORDER_TYPE_SELL_STOP")
ERR_MARKET_UNKNOWN_SYMBOL = 4301
DEAL_TYPES = {"BUY": "Buy type", "SELL": "Sell type", "BALANCE": "Balance type"}  # CDealInfo::TypeDescription


@dataclass
class Outcome:
    """What one request produced: its action and the messages for the data and trade-event sockets, in order."""

    action: str = ""
    data: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


@dataclass
class Subscription:
    """``SymbolSubscription``; ``last_bar`` 0 skips the first price."""

    symbol: str
    chart_tf: str
    last_bar: int = 0


def action_done_or_error(code: int, function: str, description: str) -> dict[str, Any]:
    """``ActionDoneOrError``."""
    return {"error": code != 0, "lastError": str(code), "description": description, "function": function}


def normalize_double(value: Decimal, digits: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def server_datetime(seconds: int) -> str:
    """``(string)`` of a ``datetime``: ``yyyy.mm.dd hh:mi:ss``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y.%m.%d %H:%M:%S")


class ExpertAdvisor:
    def __init__(
        self,
        account: Account,
        *,
        chart_symbol: str = "EURUSD",
        single_socket: bool = False,
        symbolinfo: str = "none",
        book: bool = False,
        margin_mode: bool = False,
    ) -> None:
        self.account = account
        self.digits = account.specs[chart_symbol].digits  # _Digits: the chart the EA is attached to
        self.single_socket = single_socket
        self.symbolinfo = symbolinfo  # none | extension | ejtrader
        self.book = book
        self.margin_mode = margin_mode  # ACCOUNT also says the margin mode (an extension: the stock EA does not)
        self.subscriptions: list[Subscription] = []
        self.connected_flag = True
        self.last_error = 0
        self._out = Outcome()

    def reset(self) -> None:
        """OnDeinit + OnInit (a reload): the EA's globals start over; the account is the terminal's."""
        self.subscriptions.clear()
        self.connected_flag = True

    # ----------------------------------------------------------------------------- RequestHandler

    def request(self, raw: bytes) -> Outcome:
        """``RequestHandler`` for one non-empty request, then ``OnTradeTransaction`` for what it sent."""
        self._out = out = Outcome()
        self.last_error = 0
        root, ok = deserialize(raw.decode("utf-8", errors="replace"))  # ZmqMsg::getData: StringFromUtf8Pointer
        if not ok:
            self._user_error(65537, "RequestHandler")
        out.action = root["action"].to_str()
        handlers = {
            "CONFIG": self.script_configuration, "ACCOUNT": self.get_account_info, "BALANCE": self.get_balance_info,
            "HISTORY": self.history_info, "TRADE": self.trading_module, "POSITIONS": self.get_positions,
            "ORDERS": self.get_orders, "RESET": self.reset_subscriptions,
        }  # fmt: skip
        if self.single_socket:
            del handlers["RESET"]
        if self.symbolinfo != "none":
            handlers["SYMBOLINFO"] = self.get_symbol_info
        if self.book:
            handlers["BOOK"] = self.get_book
        handler = handlers.get(out.action)
        if handler is None:
            self._user_error(65538, "RequestHandler")
        else:
            handler(root)
        for request, result in self.account.transactions:  # the terminal's event queue, after the handler
            out.events.append(serialize(trade_transaction(request, result)))
        self.account.transactions.clear()
        return out

    def _inform(self, message: Any) -> None:
        """``InformClientSocket`` to the data socket; it resets the last error."""
        self._out.data.append(serialize(message))
        self.last_error = 0

    def _check_error(self, function: str) -> bool:
        """``CheckError``."""
        if not self.last_error:
            return False
        code, self.last_error = self.last_error, 0
        self._inform(action_done_or_error(code, function, error_desc(code)))
        return True

    def _user_error(self, code: int, function: str) -> None:
        """``mControl.mSetUserError(code, GetErrorID(code)); CheckError(function)``."""
        self.last_error = code
        self._check_error(function)

    def _symbol_info_string(self, symbol: str) -> None:
        """``SymbolInfoString(symbol, SYMBOL_DESCRIPTION)``: only its error matters."""
        if symbol not in self.account.specs:
            self.last_error = ERR_MARKET_UNKNOWN_SYMBOL

    # ----------------------------------------------------------------------------- JsonAPI.mq5

    def script_configuration(self, root: JVal) -> None:
        """``ScriptConfiguration``: subscribes first (always, even twice), then checks the symbol."""
        symbol = root["symbol"].to_str()
        self.subscriptions.append(Subscription(symbol, root["chartTF"].to_str()))
        self.last_error = 0
        self._symbol_info_string(symbol)
        if not self._check_error("ScriptConfiguration"):
            self._inform(action_done_or_error(0, "ScriptConfiguration", "ERR_SUCCESS"))

    def get_account_info(self, root: JVal) -> None:
        a = self.account
        info: dict[str, Any] = {
            "error": False, "broker": a.company, "currency": a.currency, "server": a.server, "trading_allowed": 1,
            "bot_trading": 1, "balance": Decimal(a.balance), "equity": a.equity(), "margin": a.margin(),
            "margin_free": a.margin_free(), "margin_level": a.margin_level(),
        }  # fmt: skip
        if self.single_socket:
            info["time"] = server_datetime(a.server_time())
        if self.margin_mode:
            info["margin_mode"] = margin_mode_name(a.hedging)
        self._inform(info)

    def get_balance_info(self, root: JVal) -> None:
        a = self.account
        self._inform({"balance": Decimal(a.balance), "equity": a.equity(), "margin": a.margin(),
                      "margin_free": a.margin_free()})  # fmt: skip

    def reset_subscriptions(self, root: JVal | None = None) -> None:
        """``ResetSubscriptionsAndIndicators``."""
        self.subscriptions.clear()
        self._inform(action_done_or_error(0, "ResetSubscriptionsAndIndicators", "ERR_SUCCESS"))

    def stream_price_data(self) -> list[str]:
        """``StreamPriceData`` (every OnTimer): messages for the live socket."""
        a, out = self.account, []
        if self.single_socket:
            return out
        if not a.connected:
            if self.connected_flag:  # "send disconnect message only once"
                out.append(serialize({"status": "DISCONNECTED"}))
                self.connected_flag = False
            return out
        self.connected_flag = True
        for sub in self.subscriptions:
            data: list[Any]
            if sub.chart_tf == "TICK":
                tick = a.tick(sub.symbol)
                this_bar, data = (tick.time_msc, [tick.time_msc, tick.bid, tick.ask]) if tick else (0, [])
            else:
                bar = closed_bar(a, sub.symbol, timeframe_seconds(sub.chart_tf))
                this_bar, data = (bar.time, bar.row()) if bar else (0, [])
            if sub.last_bar != this_bar:
                if sub.last_bar:  # "skip first price data after startup/reset"
                    out.append(serialize({"status": "CONNECTED", "symbol": sub.symbol, "timeframe": sub.chart_tf,
                                          "data": data}))  # fmt: skip
                sub.last_bar = this_bar
        return out

    # ----------------------------------------------------------------------------- HistoryInfo.mqh

    def history_info(self, root: JVal) -> None:
        action_type, chart_tf = root["actionType"].to_str(), root["chartTF"].to_str()
        symbol = root["symbol"].to_str()
        from_s, to_s = root["fromDate"].to_int(), root["toDate"].to_int() or self.account.server_time()
        if action_type == "WRITE":  # not simulated: no CSV file, no live messages
            self._inform(action_done_or_error(0, "HistoryInfo", "ERR_SUCCESS"))
        elif action_type == "DATA":
            rows: list[Any] | None
            if chart_tf == "TICK":  # CopyTicksRange(symbol, ..., 1000*from, 1000*to): -1 for an unknown symbol
                ticks = self.account.ticks.get(symbol)
                rows = None if ticks is None else [[t.time_msc, t.bid, t.ask] for t in ticks
                                                   if from_s * 1000 <= t.time_msc <= to_s * 1000]  # fmt: skip
            else:
                bars: list[Bar] | None = copy_rates(self.account, symbol, timeframe_seconds(chart_tf), from_s, to_s)
                rows = None if bars is None else [b.row() for b in bars]
            # data[i][..] then d["data"].Set(data); none: d["data"].Add(data) -> []; -1: Set(undefined) -> omitted
            data: Any = UNDEF if rows is None else rows or [UNDEF]
            self._inform({"data": data, "symbol": symbol, "timeframe": chart_tf})
        elif action_type == "TRADES":
            self._inform(self._trades())
        else:
            self._user_error(65538, "HistoryInfo")

    def _trades(self) -> dict[str, Any] | Undefined:
        """HistorySelect(0, TimeCurrent()) then every deal; ``fromDate`` is not read. No deal: ``trades`` is
        never touched and the message is empty."""
        now = self.account.server_time()
        rows = [{"ticket": d.ticket, "time": d.time, "price": d.price, "volume": d.volume, "symbol": d.symbol,
                 "type": DEAL_TYPES[d.type], "entry": d.entry, "profit": d.profit}
                for d in self.account.deals if d.time <= now]  # fmt: skip
        return {"trades": rows} if rows else UNDEF

    # ----------------------------------------------------------------------------- Broker.mqh

    def get_positions(self, root: JVal) -> None:
        a, data = self.account, {}
        positions = list(a.positions.values())
        if self.single_socket:  # ejtraderMT: each ticket, "error" after the rows
            data["positions"] = [position_row(p) for p in positions] or [UNDEF]
            for _ in positions:
                self._check_error("GetPositions")
            data["error"] = False
            self._inform(data)
            return
        if not positions:
            data["positions"] = [UNDEF]  # "Create empty array if no positions": one undefined element
        for p in positions:
            selected = a.position_by_symbol(p.symbol)  # myposition.Select(PositionGetSymbol(i)): by symbol
            if selected is not None:
                data["error"] = False
                data.setdefault("positions", []).append(position_row(selected))
            self._check_error("GetPositions")
        self._inform(data)

    def get_orders(self, root: JVal) -> None:
        data: dict[str, Any] = {}
        orders = list(self.account.orders.values())
        if not orders:
            data["error"], data["orders"] = False, [UNDEF]
        for o in orders:
            data["error"] = False
            data.setdefault("orders", []).append({
                "id": str(o.ticket), "magic": 0, "symbol": o.symbol, "type": o.type, "time_setup": o.time_setup,
                "open": o.price, "stoploss": o.sl, "takeprofit": o.tp, "volume": o.volume,
            })  # fmt: skip
            self._check_error("GetOrders")
        self._inform(data)

    def trading_module(self, root: JVal) -> None:
        """``TradingModule``."""
        a = self.account
        self.last_error = 0
        trade = CTrade(a)
        action_type, symbol = root["actionType"].to_str(), root["symbol"].to_str()
        self._symbol_info_string(symbol)
        self._check_error("TradingModule")
        ticket = int32(root["id"].to_int()) % 2**64  # int idNimber, passed on as a ulong ticket
        volume, sl, tp = root["volume"].to_dbl(), root["stoploss"].to_dbl(), root["takeprofit"].to_dbl()
        price = normalize_double(root["price"].to_dbl(), self.digits)
        comment = root["comment"].to_str()
        expiration = root["expiration"].to_int()  # exp_type is computed and never used: always ORDER_TIME_GTC
        if action_type in ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL"):
            price = (a.ask if action_type == "ORDER_TYPE_BUY" else a.bid).get(symbol, Decimal(0))
            ok = trade.position_open(symbol, action_type, volume, price, sl, tp, comment)
        elif action_type in PENDING:
            ok = trade.pending(action_type, volume, price, symbol, sl, tp, "ORDER_TIME_GTC", expiration, comment)
        elif action_type == "POSITION_MODIFY":
            ok = trade.position_modify(ticket, sl, tp)
        elif action_type == "POSITION_PARTIAL":
            ok = trade.position_close_partial(ticket, volume)
        elif action_type == "POSITION_CLOSE_ID":
            ok = trade.position_close(ticket)
        elif action_type == "POSITION_CLOSE_SYMBOL":
            ok = trade.position_close_symbol(symbol)
        elif action_type == "ORDER_MODIFY":
            ok = trade.order_modify(ticket, price, sl, tp, "ORDER_TIME_GTC", expiration)
        elif action_type == "ORDER_CANCEL":
            ok = trade.order_delete(ticket)
        else:
            self._user_error(65538, "TradingModule")
            ok = False
        self._inform(order_done_or_error(not ok, trade.result))

    # ----------------------------------------------------------------------------- extensions (not in the EA)

    def get_symbol_info(self, root: JVal) -> None:
        self._inform(symbol_info(self.account, root["symbol"].to_str(), self.symbolinfo))

    def get_book(self, root: JVal) -> None:
        self._inform(book(self.account, root["symbol"].to_str(), root["depth"].to_int()))


def position_row(p: Position) -> dict[str, Any]:
    return {
        "id": p.identifier, "magic": p.magic, "symbol": p.symbol,
        "type": "POSITION_TYPE_BUY" if p.buy else "POSITION_TYPE_SELL", "time_setup": p.time, "open": p.price,
        "stoploss": p.sl, "takeprofit": p.tp, "volume": p.volume,
    }  # fmt: skip


def order_done_or_error(error: bool, r: TradeResult) -> dict[str, Any]:
    """``OrderDoneOrError``: no deal ticket (``// conf["deal"]=(int) trade.ResultDeal();``), ``order`` as int."""
    return {
        "error": error, "retcode": r.retcode, "desription": retcode_id(r.retcode), "order": int32(r.order),
        "volume": r.volume, "price": r.price, "bid": r.bid, "ask": r.ask, "function": "TradingModule",
    }  # fmt: skip


def trade_transaction(q: TradeRequest, r: TradeResult) -> dict[str, Any]:
    """``OnTradeTransaction`` for TRADE_TRANSACTION_REQUEST; ``result.deal`` is ``(int) result.order``."""
    request = {
        "action": q.action, "order": int32(q.order), "symbol": q.symbol, "volume": q.volume, "price": q.price,
        "stoplimit": q.stoplimit, "sl": q.sl, "tp": q.tp, "deviation": int32(q.deviation), "type": q.type,
        "type_filling": q.type_filling, "type_time": q.type_time, "expiration": int32(q.expiration),
        "comment": q.comment, "position": int32(q.position), "position_by": int32(q.position_by),
    }  # fmt: skip
    result = {
        "retcode": r.retcode, "result": retcode_id(r.retcode), "deal": int32(r.order), "order": int32(r.order),
        "volume": r.volume, "price": r.price, "comment": r.comment, "request_id": int32(r.request_id),
        "retcode_external": int32(r.retcode_external),
    }  # fmt: skip
    return {"request": request, "result": result}
