"""The EA's listings read into typed rows, and the pure rules that match them to our orders.

What the stock EA lists (Include/MQL5-JSON_API/Broker.mqh, HistoryInfo.mqh), and what follows for matching:

* POSITIONS rows ``{id, magic, symbol, type, time_setup, open, stoploss, takeprofit, volume}``: ``id`` is the
  64-bit POSITION_IDENTIFIER. On a hedging account the EA selects each row by symbol, so a symbol's positions are
  all listed as its lowest ticket: the listing still has one row per position, but the others' tickets and
  volumes are hidden. What they hold together is the symbol's net over every deal in HISTORY TRADES less the
  listed ticket (:func:`hidden_remainder`); a netting account lists one position per symbol.
* ORDERS rows: ``id`` is the ticket as a *string* (64-bit), ``type`` the ENUM_ORDER_TYPE name, ``volume`` the
  initial volume; no comment, so our client order id is not there.
* HISTORY TRADES rows ``{ticket, time, price, volume, symbol, type, entry, profit}``: ``type`` is
  ``CDealInfo::TypeDescription()`` ("Buy type", "Sell type", "Balance type", ...), ``time`` is DEAL_TIME on the
  trade server's clock, ``entry`` DEAL_ENTRY_* (0 in, 1 out, 2 in/out, 3 out by). No order ticket, position id,
  comment or commission: a deal is tied to an order only by symbol, side, volume, price and time.
* The TRADE reply's ``order`` is ``(int)`` of the ticket: the low 32 bits, signed. :func:`same_ticket` compares
  tickets modulo 2^32 where one side was cut; and since the EA also reads a request's ``id`` through ``int``, a
  ticket outside the signed 32-bit range cannot be addressed by id at all (:func:`addressable`).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from ordermesh.brokers.mt5.protocol import ZERO, num
from ordermesh.contract.wire import Side

log = structlog.get_logger("mt5")

DEAL_SIDES = {"Buy type": Side.BUY, "Sell type": Side.SELL}  # CDealInfo::TypeDescription
ENTRY_IN, ENTRY_OUT, ENTRY_INOUT, ENTRY_OUT_BY = 0, 1, 2, 3


class DealRow(msgspec.Struct, frozen=True, kw_only=True):
    ticket: int
    time_s: int  # trade-server clock
    price: Decimal
    volume: Decimal
    symbol: str
    side: Side
    entry: int


class OrderRow(msgspec.Struct, frozen=True, kw_only=True):
    ticket: int
    symbol: str
    type: str
    time_s: int  # trade-server clock
    price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    volume: Decimal


class PositionRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    symbol: str
    side: Side
    time_s: int
    price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    volume: Decimal


def same_ticket(a: int | None, b: int | None) -> bool:
    """Tickets equal as far as the EA's 32-bit cast lets anyone tell."""
    return a is not None and b is not None and (a - b) % 2**32 == 0


def addressable(ticket: int) -> bool:
    """Can the stock EA address this ticket by ``id``? (TradingModule reads it through ``int``.)"""
    return -(2**31) <= ticket < 2**31


def _rows(reply: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = reply.get(key)
    return [r for r in rows if isinstance(r, dict) and r] if isinstance(rows, list) else []


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"not an integer: {value}")
        return int(value)
    return int(str(value))


def _finite(value: Any) -> Decimal:
    out = num(value)
    if not out.is_finite() or abs(out) > Decimal("1e15"):
        raise ValueError(f"out of range: {value!r}")
    return out


def parse_deals(reply: dict[str, Any]) -> list[DealRow]:
    """Buy and sell deals of a HISTORY TRADES answer; balance, credit, commission ... rows are not trades."""
    out = []
    for r in _rows(reply, "trades"):
        side = DEAL_SIDES.get(str(r.get("type")))
        if side is None:
            continue
        try:
            out.append(
                DealRow(
                    ticket=_int(r.get("ticket")),
                    time_s=_int(r.get("time")),
                    price=_finite(r.get("price")),
                    volume=_finite(r.get("volume")),
                    symbol=str(r.get("symbol")),
                    side=side,
                    entry=_int(r.get("entry") or 0),
                )
            )
        except (ValueError, ArithmeticError):
            log.warning("unreadable deal row skipped", row=r)
    return out


def parse_orders(reply: dict[str, Any]) -> list[OrderRow]:
    out = []
    for r in _rows(reply, "orders"):
        try:
            out.append(
                OrderRow(
                    ticket=_int(r.get("id")),
                    symbol=str(r.get("symbol")),
                    type=str(r.get("type")),
                    time_s=_int(r.get("time_setup") or 0),
                    price=_finite(r.get("open")),
                    stop_loss=_finite(r.get("stoploss")),
                    take_profit=_finite(r.get("takeprofit")),
                    volume=_finite(r.get("volume")),
                )
            )
        except (ValueError, ArithmeticError):
            log.warning("unreadable order row skipped", row=r)
    return out


def parse_positions(reply: dict[str, Any]) -> tuple[list[PositionRow], int]:
    """The positions, and how many rows repeated an earlier one (the hedging listing's quirk)."""
    out: dict[int, PositionRow] = {}
    repeats = 0
    for r in _rows(reply, "positions"):
        try:
            row = PositionRow(
                id=_int(r.get("id")),
                symbol=str(r.get("symbol")),
                side=Side.SELL if r.get("type") == "POSITION_TYPE_SELL" else Side.BUY,
                time_s=_int(r.get("time_setup") or 0),
                price=_finite(r.get("open")),
                stop_loss=_finite(r.get("stoploss")),
                take_profit=_finite(r.get("takeprofit")),
                volume=_finite(r.get("volume")),
            )
        except (ValueError, ArithmeticError):
            log.warning("unreadable position row skipped", row=r)
            continue
        if row.id in out:
            repeats += 1
            continue
        out[row.id] = row
    return list(out.values()), repeats


def listed_per_symbol(reply: dict[str, Any]) -> dict[str, int]:
    """How many rows the POSITIONS answer has per symbol (one per position, even where the EA repeats a ticket)."""
    out: dict[str, int] = {}
    for r in _rows(reply, "positions"):
        symbol = str(r.get("symbol"))
        out[symbol] = out.get(symbol, 0) + 1
    return out


def hidden_per_symbol(rows: list[PositionRow], listed: dict[str, int]) -> dict[str, int]:
    """Positions per symbol whose ticket the listing does not show (rows beyond the distinct tickets)."""
    distinct: dict[str, int] = {}
    for p in rows:
        distinct[p.symbol] = distinct.get(p.symbol, 0) + 1
    return {s: n - distinct.get(s, 0) for s, n in listed.items() if n > distinct.get(s, 0)}


def signed(side: Side, volume: Decimal) -> Decimal:
    return volume if side is Side.BUY else -volume


def deal_net(deals: list[DealRow]) -> dict[str, Decimal]:
    """Each symbol's net volume over ``deals`` (buys less sells). Every position change is a deal, so over the
    whole history this is what the account holds per symbol (hedged tickets netted), on either margin mode."""
    out: dict[str, Decimal] = {}
    for d in deals:
        out[d.symbol] = out.get(d.symbol, ZERO) + signed(d.side, d.volume)
    return out


def hidden_remainder(rows: list[PositionRow], hidden: dict[str, int], deals: list[DealRow]) -> dict[str, Decimal]:
    """What the tickets the listing hides hold together, per symbol: the symbol's net over all its deals less the
    listed tickets. Trusted only when the history adds up where nothing is hidden (every other symbol's net equals
    its listed positions); otherwise ValueError (the history is incomplete: nothing can be told)."""
    net = deal_net(deals)
    listed: dict[str, Decimal] = {}
    for p in rows:
        listed[p.symbol] = listed.get(p.symbol, ZERO) + signed(p.side, p.volume)
    wrong = sorted(s for s in set(net) | set(listed) if s not in hidden and net.get(s, ZERO) != listed.get(s, ZERO))
    if wrong:
        raise ValueError(f"HISTORY TRADES does not add up to the listed positions of {', '.join(wrong)}")
    return {s: net.get(s, ZERO) - listed.get(s, ZERO) for s in hidden}


#: ENUM_ACCOUNT_MARGIN_MODE: RETAIL_NETTING 0, EXCHANGE 1, RETAIL_HEDGING 2
_MARGIN_MODES = {
    "ACCOUNT_MARGIN_MODE_RETAIL_NETTING": False, "ACCOUNT_MARGIN_MODE_EXCHANGE": False,
    "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING": True, "0": False, "1": False, "2": True,
}  # fmt: skip


def margin_mode_field(account: dict[str, Any]) -> bool | None:
    """Hedging (True) or netting (False) as an ACCOUNT answer says it, None when it does not: the stock EA's
    GetAccountInfo never reads ACCOUNT_MARGIN_MODE; an EA that adds ``margin_mode`` (name or number) is heard."""
    value = account.get("margin_mode")
    if value is None or isinstance(value, bool):
        return None
    return _MARGIN_MODES.get(str(value).strip().upper().removesuffix(".0"))


def margin_mode_evidence(listed: dict[str, int] | None, deals: list[DealRow]) -> tuple[bool, str] | None:
    """What the listings prove about the margin mode (hedging True), with why; None when they prove nothing.
    Only a hedging account holds two positions of one symbol or closes one position by another (DEAL_ENTRY_OUT_BY);
    only a netting one reverses a position in one deal (DEAL_ENTRY_INOUT)."""
    for symbol, n in sorted((listed or {}).items()):
        if n > 1:
            return True, f"POSITIONS lists {n} positions of {symbol}"
    for d in deals:
        if d.entry == ENTRY_OUT_BY:
            return True, f"deal {d.ticket} closed a position by another (DEAL_ENTRY_OUT_BY)"
        if d.entry == ENTRY_INOUT:
            return False, f"deal {d.ticket} reversed a position (DEAL_ENTRY_INOUT)"
    return None


class ServerClock:
    """The trade server's offset from UTC. MT5 stamps deals, orders, positions and ticks with the server's wall
    clock (often UTC+2/+3). Configured, or detected from ticks (rounded to the quarter hour, as time zones are)."""

    QUARTER = 900

    def __init__(self, configured_s: int | None = None) -> None:
        self.offset_s = configured_s
        self.configured = configured_s is not None

    def observe_tick(self, time_msc: int, now_s: float | None = None) -> None:
        if self.configured or time_msc <= 0:
            return
        now = time.time() if now_s is None else now_s
        offset = round((time_msc / 1000 - now) / self.QUARTER) * self.QUARTER
        if abs(offset) <= 14 * 3600:
            self.offset_s = offset

    def latest(self, unix_s: int) -> int:
        """The latest server-clock time of something that happened by ``unix_s``."""
        return unix_s + (14 * 3600 if self.offset_s is None else self.offset_s)

    def window(self, sent_s: int, after_s: int) -> tuple[int, int]:
        """Server-clock bounds for something that happened between ``sent_s`` (unix) and ``after_s`` later.
        With no known offset the window spans every time zone (matching then leans on the other criteria)."""
        if self.offset_s is None:
            return sent_s - 14 * 3600 - 5, sent_s + after_s + 14 * 3600
        return sent_s + self.offset_s - 5, sent_s + self.offset_s + after_s


def dealing_candidates(
    deals: list[DealRow], *, symbol: str, side: Side, volume: Decimal, window: tuple[int, int], claimed: set[int]
) -> list[DealRow]:
    """Deals that could be the one a market request made: same symbol, side and volume, in the window, not
    already someone else's."""
    lo, hi = window
    return [
        d
        for d in deals
        if d.symbol == symbol
        and d.side is side
        and d.volume == volume
        and lo <= d.time_s <= hi
        and d.ticket not in claimed
    ]


def pending_fill_candidates(
    deals: list[DealRow],
    *,
    symbol: str,
    side: Side,
    action_type: str,
    price: Decimal | None,
    remaining: Decimal,
    window: tuple[int, int],
    claimed: set[int],
) -> list[DealRow]:
    """Deals that could fill a pending order: its symbol and side, no larger than what is left, in the window,
    and at a price the order allows (a limit at its price or better; a stop at or beyond its trigger)."""
    lo, hi = window

    def price_ok(d: DealRow) -> bool:
        if price is None:
            return True
        buy = side is Side.BUY
        if "LIMIT" in action_type:
            return d.price <= price if buy else d.price >= price
        return d.price >= price if buy else d.price <= price

    return [
        d
        for d in deals
        if d.symbol == symbol
        and d.side is side
        and ZERO < d.volume <= remaining
        and lo <= d.time_s <= hi
        and d.ticket not in claimed
        and price_ok(d)
    ]


def order_candidates(
    orders: list[OrderRow],
    *,
    symbol: str,
    action_type: str,
    volume: Decimal,
    price: Decimal | None,
    window: tuple[int, int],
    claimed: set[int],
) -> list[OrderRow]:
    """Working orders that could be the one a lost pending request placed."""
    lo, hi = window
    return [
        o
        for o in orders
        if o.symbol == symbol
        and o.type == action_type
        and o.volume == volume
        and (price is None or o.price == price)
        and lo <= o.time_s <= hi
        and not any(same_ticket(o.ticket, c) for c in claimed)
    ]
