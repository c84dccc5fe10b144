"""The parts of MQL5's ``CTrade`` (Include/Trade/Trade.mqh, MetaQuotes 2009-2017) the EA's TradingModule calls,
ported method by method onto :meth:`Account.order_send <tools.mt5sim.engine.Account.order_send>`.

What matters on the wire: a method that returns before ``OrderSend`` leaves ``m_result`` as the constructor's
``ClearStructures`` zeroed it, so the EA answers retcode 0 ("TRADE_RETCODE_UNKNOWN=0") and no trade event
follows. That happens for an unknown symbol (``OrderTypeCheck`` fails on ``CSymbolInfo::Name``), a ticket
``PositionSelectByTicket`` cannot find, and every ``PositionClosePartial`` on a netting account (hedging only).
``BuyLimit``/``SellLimit``/``BuyStop``/``SellStop`` answer 10014 for a volume <= 0 and 10015 for a price of 0,
unsent, and ``OrderOpen`` 10022 for an unknown symbol without expiration (its SYMBOL_EXPIRATION_MODE reads 0).
``PositionClose(symbol)`` answers 10006 REJECT when it finds no position, and on a netting account returns true
after a failed ``OrderSend`` (its ``continue`` jumps to ``while(partial_close)``, false, so the loop ends and the
method returns true): the EA then reports ``"error":false`` with the failing retcode.

Guesses about the symbols (their properties are the broker's): market execution with FOK filling allowed, every
order type and SL/TP allowed, GTC expiration allowed. ``Sleep(1000)`` between the chunks of a netting
``PositionClose`` above the symbol's maximum volume is not simulated.
"""

from __future__ import annotations

from decimal import Decimal

from tools.mt5sim.engine import DONE_PARTIAL, ZERO, Account, Position, TradeRequest, TradeResult

DEVIATION = 10  # CTrade::CTrade: m_deviation(10)
REJECT = 10006


class CTrade:
    def __init__(self, account: Account) -> None:
        self.account = account
        self.magic = 0  # the EA never calls SetExpertMagicNumber
        self.request, self.result = TradeRequest(), TradeResult()  # the constructor's ClearStructures

    def _clear(self) -> None:
        self.request, self.result = TradeRequest(), TradeResult()

    def _send(self) -> bool:
        ok, self.result = self.account.order_send(self.request)
        return ok

    def _known(self, symbol: str) -> bool:
        """``OrderTypeCheck``: ``CSymbolInfo::Name`` fails for an unknown symbol (m_result untouched)."""
        return symbol in self.account.specs

    def _close_side(self, pos: Position) -> None:
        """The opposite type at the closing price (the block every close method repeats)."""
        a, r = self.account, self.request
        r.type = "ORDER_TYPE_SELL" if pos.buy else "ORDER_TYPE_BUY"
        r.price = a.bid[pos.symbol] if pos.buy else a.ask[pos.symbol]

    def position_open(self, symbol: str, order_type: str, volume: Decimal, price: Decimal, sl: Decimal,
                      tp: Decimal, comment: str) -> bool:  # fmt: skip
        self._clear()
        r = self.request
        r.action, r.symbol, r.magic, r.volume, r.type = "TRADE_ACTION_DEAL", symbol, self.magic, volume, order_type
        r.price, r.sl, r.tp, r.deviation = price, sl, tp, DEVIATION
        if not self._known(symbol):
            return False
        r.type_filling, r.comment = "ORDER_FILLING_FOK", comment  # FillingCheck: market execution, FOK allowed
        return self._send()

    def position_modify(self, ticket: int, sl: Decimal, tp: Decimal) -> bool:
        pos = self.account.position_by_ticket(ticket)
        if pos is None:
            return False
        self._clear()
        r = self.request
        r.action, r.position, r.symbol, r.magic = "TRADE_ACTION_SLTP", ticket, pos.symbol, self.magic
        r.sl, r.tp = sl, tp
        return self._send()

    def position_close(self, ticket: int) -> bool:
        """``PositionClose(const ulong ticket)``."""
        pos = self.account.position_by_ticket(ticket)
        if pos is None:
            return False
        self._clear()
        self.request.type_filling = "ORDER_FILLING_FOK"
        self._close_side(pos)
        r = self.request
        r.action, r.position, r.symbol, r.volume = "TRADE_ACTION_DEAL", ticket, pos.symbol, pos.volume
        r.magic, r.deviation = self.magic, DEVIATION
        return self._send()

    def position_close_symbol(self, symbol: str) -> bool:
        """``PositionClose(const string symbol)``, with its retry loop as written."""
        retry, retcode, a = 10, REJECT, self.account
        self._clear()
        self.request.type_filling = "ORDER_FILLING_FOK"
        while True:
            pos = a.first_position(symbol, self.magic) if a.hedging else a.position_by_symbol(symbol)
            if pos is None:
                self.result.retcode = retcode
                return False
            self._close_side(pos)
            r = self.request
            r.action, r.symbol, r.volume, r.magic = "TRADE_ACTION_DEAL", symbol, pos.volume, self.magic
            r.deviation = DEVIATION
            max_volume = a.specs[symbol].volume_max if symbol in a.specs else ZERO
            partial_close = r.volume > max_volume
            if partial_close:
                r.volume = max_volume
            if a.hedging:
                r.position = pos.ticket
                return self._send()
            if not self._send():
                retry -= 1
                if retry:  # `continue` in a do-while: straight to `while(partial_close)`
                    if partial_close:
                        continue
                    break
                if retcode == DONE_PARTIAL:
                    self.result.retcode = retcode
                return False
            retcode = DONE_PARTIAL
            if not partial_close:
                break
        return True

    def position_close_partial(self, ticket: int, volume: Decimal) -> bool:
        """``PositionClosePartial(const ulong ticket, ...)``: "for hedging mode only"."""
        if not self.account.hedging:
            return False
        pos = self.account.position_by_ticket(ticket)
        if pos is None:
            return False
        self._clear()
        self.request.type_filling = "ORDER_FILLING_FOK"
        self._close_side(pos)
        r = self.request
        r.action, r.position, r.symbol, r.volume = "TRADE_ACTION_DEAL", ticket, pos.symbol, min(pos.volume, volume)
        r.magic, r.deviation = self.magic, DEVIATION
        return self._send()

    def pending(self, order_type: str, volume: Decimal, price: Decimal, symbol: str, sl: Decimal, tp: Decimal,
                type_time: str, expiration: int, comment: str) -> bool:  # fmt: skip
        """``BuyLimit``/``SellLimit``/``BuyStop``/``SellStop`` and the ``OrderOpen`` they call."""
        if volume <= 0:
            self.result.retcode = 10014
            return False
        if price == 0:
            self.result.retcode = 10015
            return False
        self._clear()
        r = self.request
        r.type_filling = "ORDER_FILLING_FOK"  # the first FillingCheck runs while action is still 0 (not PENDING)
        if not self._known(symbol) and expiration == 0:  # SYMBOL_EXPIRATION_MODE reads 0: neither GTC nor DAY
            self.result.retcode = 10022
            return False
        r.action, r.symbol, r.magic, r.volume, r.type = "TRADE_ACTION_PENDING", symbol, self.magic, volume, order_type
        r.stoplimit, r.price, r.sl, r.tp, r.type_time, r.expiration = ZERO, price, sl, tp, type_time, expiration
        if not self._known(symbol):
            return False
        r.comment = comment
        return self._send()

    def order_modify(self, ticket: int, price: Decimal, sl: Decimal, tp: Decimal, type_time: str,
                     expiration: int) -> bool:  # fmt: skip
        self._clear()
        r = self.request
        r.action, r.magic, r.order, r.price, r.stoplimit = "TRADE_ACTION_MODIFY", self.magic, ticket, price, ZERO
        r.sl, r.tp, r.type_time, r.expiration = sl, tp, type_time, expiration
        return self._send()

    def order_delete(self, ticket: int) -> bool:
        self._clear()
        r = self.request
        r.action, r.magic, r.order = "TRADE_ACTION_REMOVE", self.magic, ticket
        return self._send()
