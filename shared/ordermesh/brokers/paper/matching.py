"""Matching against an order book (pure, exact): what an order gets from the book it meets.

* An arriving (taker) order walks the opposite side level by level, best first: a MARKET order as far as it needs,
  a LIMIT order only through prices at or better than its limit. Each level it takes is one execution at that
  level's price (so the order's price is the VWAP of its executions).
* FOK: when the book (within the limit) holds less than the quantity, nothing trades and the order is canceled.
  IOC and MARKET orders cancel what they could not fill; a LIMIT GTC/DAY/GTD order rests with the rest.
* A resting LIMIT order fills when a later book crosses it, at its own price, as maker, up to the size the book
  shows through its price (the rest keeps resting).
* STOP orders trigger on the quote: a buy stop when the ask reaches the stop price, a sell stop when the bid does.
* Slippage is measured in basis points against a reference price, positive when the fill is worse than the
  reference (a buy above it, a sell below it). An optional :class:`SlippageModel` moves taker prices further.

The synthetic book replenishes with every quote: executions do not consume liquidity for later orders.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Final, NamedTuple

import msgspec

from ordermesh.brokers.model import BookLevel, OrderBook
from ordermesh.contract.wire import MAX_MAGNITUDE, Liquidity, OrderType, Side, TimeInForce

ZERO: Final = Decimal(0)
BPS: Final = Decimal(10_000)
#: Slippage figures are kept to 1/10,000 of a basis point.
BPS_QUANTUM: Final = Decimal("0.0001")


class SlippageModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Extra slippage on taker executions: ``fixed_bps`` plus ``depth_bps`` * order quantity / the depth of the
    book side it takes from. The moved price is rounded to the tick against the taker."""

    fixed_bps: Decimal = ZERO
    depth_bps: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("fixed_bps", "depth_bps"):
            value = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"slippage {name} must be >= 0, got {value}")

    def extra_bps(self, quantity: Decimal, depth: Decimal) -> Decimal:
        extra = self.fixed_bps
        if self.depth_bps and depth > 0:
            extra += self.depth_bps * quantity / depth
        return extra


class Execution(NamedTuple):
    price: Decimal
    quantity: Decimal
    liquidity: Liquidity


class Outcome(NamedTuple):
    """What an arriving order got: its executions, the quantity left, and whether that rest rests or is
    canceled (``reason`` says why)."""

    executions: list[Execution]
    leaves: Decimal
    rests: bool
    canceled: bool
    reason: str = ""


def opposite(book: OrderBook, side: Side) -> list[BookLevel]:
    """The levels an order of ``side`` trades against (a buy takes the asks)."""
    return book.asks if side is Side.BUY else book.bids


def within(side: Side, price: Decimal, limit: Decimal | None) -> bool:
    """True when trading at ``price`` respects ``limit`` (None: any price)."""
    if limit is None:
        return True
    return price <= limit if side is Side.BUY else price >= limit


def available(book: OrderBook, side: Side, limit: Decimal | None = None) -> Decimal:
    """Size an order of ``side`` could take from ``book`` at prices within ``limit``."""
    return sum((lv.size for lv in opposite(book, side) if within(side, lv.price, limit)), ZERO)


def take(book: OrderBook, side: Side, quantity: Decimal, limit: Decimal | None = None) -> list[Execution]:
    """Walk the book for ``quantity``: one taker execution per level touched, best level first."""
    out = []
    left = quantity
    for lv in opposite(book, side):
        if left <= 0 or not within(side, lv.price, limit):
            break
        qty = min(left, lv.size)
        out.append(Execution(lv.price, qty, Liquidity.TAKER))
        left -= qty
    return out


def vwap(executions: list[Execution]) -> Decimal:
    qty = sum((e.quantity for e in executions), ZERO)
    if not qty:
        raise ValueError("no executions")
    return sum((e.price * e.quantity for e in executions), ZERO) / qty


def match_arriving(
    book: OrderBook,
    side: Side,
    quantity: Decimal,
    order_type: OrderType,
    limit: Decimal | None,
    tif: TimeInForce,
) -> Outcome:
    """Match an arriving MARKET or LIMIT order (a triggered stop arrives as one) against ``book``."""
    limit_px = limit if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    if tif is TimeInForce.FOK:
        depth = available(book, side, limit_px)
        if depth < quantity:
            return Outcome([], quantity, False, True, f"FOK: the book holds {depth} of {quantity}")
    executions = take(book, side, quantity, limit_px)
    leaves = quantity - sum((e.quantity for e in executions), ZERO)
    if not leaves:
        return Outcome(executions, leaves, False, False)
    if limit_px is None:
        return Outcome(executions, leaves, False, True, "market order: not enough depth, the rest canceled")
    if tif is TimeInForce.IOC:
        return Outcome(executions, leaves, False, True, "IOC: the rest canceled")
    return Outcome(executions, leaves, True, False)


def match_resting(book: OrderBook, side: Side, leaves: Decimal, limit: Decimal) -> Execution | None:
    """A resting limit order against a new book: filled at its limit, as maker, up to the size shown through
    its price; None when the book does not cross it."""
    qty = min(leaves, available(book, side, limit))
    if qty <= 0:
        return None
    return Execution(limit, qty, Liquidity.MAKER)


def stop_triggered(book: OrderBook, side: Side, stop: Decimal) -> bool:
    """A buy stop triggers when the ask reaches the stop price; a sell stop when the bid reaches it."""
    if side is Side.BUY:
        return book.asks[0].price >= stop
    return book.bids[0].price <= stop


def with_extra_slippage(side: Side, price: Decimal, extra_bps: Decimal, tick: Decimal) -> Decimal:
    """``price`` moved ``extra_bps`` against the taker, on the tick grid (rounded against the taker)."""
    if not extra_bps:
        return price
    if side is Side.BUY:
        moved = price * (BPS + extra_bps) / BPS
        return (moved / tick).to_integral_value(rounding=ROUND_CEILING) * tick
    moved = price * (BPS - extra_bps) / BPS
    return max(tick, (moved / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)


def slippage_bps(side: Side, price: Decimal, reference: Decimal) -> Decimal | None:
    """Cost of trading at ``price`` against ``reference`` in basis points (positive: worse than the reference),
    to 1/10,000 bp (half-even). None when it cannot be told: a reference that is not positive, or so far from the
    price that the figure is beyond what the wire carries (a reference of 1e-999999 overflowed here once)."""
    if not reference > 0:
        return None
    diff = price - reference if side is Side.BUY else reference - price
    try:
        bps = (diff * BPS / reference).quantize(BPS_QUANTUM, rounding=ROUND_HALF_EVEN)
    except ArithmeticError:
        return None
    return bps if abs(bps) < MAX_MAGNITUDE else None


def expiry_ns(tif: TimeInForce, accepted_ns: int, expire_at_ns: int | None) -> int | None:
    """When a resting order expires: GTD at ``expire_at_ns``, DAY at the next UTC midnight after acceptance,
    GTC/IOC/FOK never (IOC and FOK do not rest)."""
    if tif is TimeInForce.GTD:
        return expire_at_ns
    if tif is TimeInForce.DAY:
        day = dt.datetime.fromtimestamp(accepted_ns / 1e9, tz=dt.UTC).date() + dt.timedelta(days=1)
        return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    return None
