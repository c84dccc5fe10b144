"""Transaction cost analysis (pure): slippage and commissions of fills, by symbol and strategy.

Slippage per fill is the venue's ``slippage_bps`` when it gives one, else worked out from ``reference_price``
(positive: worse than the reference); fills with neither are counted but not in the slippage figures. Averages are
quantity-weighted. Commissions are summed per asset (a venue may charge in the quote or the base asset).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import msgspec

from ordermesh.brokers.paper.matching import BPS_QUANTUM, slippage_bps
from ordermesh.contract.wire import OrderFilled

ZERO: Final = Decimal(0)


class TcaRow(msgspec.Struct, kw_only=True):
    symbol: str
    strategy_id: str
    fills: int = 0
    quantity: Decimal = ZERO
    notional: Decimal = ZERO  # price * quantity (lots), in the quote currency per lot unit
    #: Quantity-weighted average slippage in bps over the fills that have one (None: none had one).
    avg_slippage_bps: Decimal | None = None
    min_slippage_bps: Decimal | None = None
    max_slippage_bps: Decimal | None = None
    commission: dict[str, Decimal] = msgspec.field(default_factory=dict)
    _weighted: Decimal = ZERO
    _measured_qty: Decimal = ZERO


def fill_slippage(fill: OrderFilled) -> Decimal | None:
    if fill.slippage_bps is not None:
        return fill.slippage_bps
    if fill.reference_price:
        return slippage_bps(fill.side, fill.last_px, fill.reference_price)
    return None


def analyse(fills: Iterable[OrderFilled]) -> list[TcaRow]:
    """One row per (symbol, strategy), sorted, each fill once (by broker and fill id)."""
    rows: dict[tuple[str, str], TcaRow] = {}
    seen: set[tuple[str, str]] = set()
    for f in fills:
        if (f.broker_id, f.fill_id) in seen:
            continue
        seen.add((f.broker_id, f.fill_id))
        row = rows.setdefault((f.symbol, f.strategy_id), TcaRow(symbol=f.symbol, strategy_id=f.strategy_id))
        row.fills += 1
        row.quantity += f.last_qty
        row.notional += f.last_qty * f.last_px
        if f.commission:
            asset = f.commission_asset or "?"
            row.commission[asset] = row.commission.get(asset, ZERO) + f.commission
        bps = fill_slippage(f)
        if bps is not None:
            row._weighted += bps * f.last_qty
            row._measured_qty += f.last_qty
            row.min_slippage_bps = bps if row.min_slippage_bps is None else min(row.min_slippage_bps, bps)
            row.max_slippage_bps = bps if row.max_slippage_bps is None else max(row.max_slippage_bps, bps)
    for row in rows.values():
        if row._measured_qty:
            row.avg_slippage_bps = (row._weighted / row._measured_qty).quantize(BPS_QUANTUM)
    return [rows[k] for k in sorted(rows)]


def format_report(rows: list[TcaRow]) -> str:
    if not rows:
        return "no fills in the period"
    header = (
        f"{'symbol':<12} {'strategy':<16} {'fills':>6} {'quantity':>12} {'avg slip bps':>13} "
        f"{'min':>9} {'max':>9}  commission"
    )
    lines = [header, "-" * len(header)]

    def b(v: Decimal | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for r in rows:
        comm = ", ".join(f"{amount.normalize():f} {asset}" for asset, amount in sorted(r.commission.items())) or "0"
        lines.append(
            f"{r.symbol:<12} {r.strategy_id:<16} {r.fills:>6} {r.quantity.normalize():>12f} "
            f"{b(r.avg_slippage_bps):>13} {b(r.min_slippage_bps):>9} {b(r.max_slippage_bps):>9}  {comm}"
        )
    return "\n".join(lines)
