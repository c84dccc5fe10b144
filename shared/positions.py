"""The keeper's books (walking-skeleton scope): net quantity, average price and realized PnL per
(account, symbol) and per (account, strategy, symbol), built from fills alone.

Applying the same fill twice is impossible: fills are deduplicated by (broker_id, fill_id), and the book
records the last exec-stream sequence it applied, so a restart resumes exactly after it.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ordermesh.wire import OrderFilled, Position


class NetPosition(msgspec.Struct, kw_only=True):
    quantity: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    fills: int = 0

    def apply(self, signed_qty: Decimal, price: Decimal, commission: Decimal) -> None:
        pos = self.quantity
        new = pos + signed_qty
        if pos == 0 or (pos > 0) == (signed_qty > 0):
            # open or add: volume-weighted average price
            self.avg_price = (pos * self.avg_price + signed_qty * price) / new
        else:
            closed = min(abs(pos), abs(signed_qty))
            direction = 1 if pos > 0 else -1
            self.realized_pnl += closed * (price - self.avg_price) * direction
            if new == 0:
                self.avg_price = Decimal(0)
            elif (new > 0) != (pos > 0):
                self.avg_price = price  # flipped: the remainder opens at the fill price
        self.quantity = new
        self.commission += commission
        self.fills += 1


class BookSnapshot(msgspec.Struct, kw_only=True):
    applied_seq: int = 0
    fills_applied: int = 0
    accounts: dict[str, dict[str, NetPosition]] = msgspec.field(default_factory=dict)
    strategies: dict[str, dict[str, dict[str, NetPosition]]] = msgspec.field(default_factory=dict)
    fill_keys: list[str] = msgspec.field(default_factory=list)


class PositionBook:
    def __init__(self, snapshot: BookSnapshot | None = None) -> None:
        snap = snapshot or BookSnapshot()
        self.applied_seq = snap.applied_seq
        self.fills_applied = snap.fills_applied
        self.accounts = snap.accounts
        self.strategies = snap.strategies
        self._fill_keys = set(snap.fill_keys)

    def apply_fill(self, fill: OrderFilled, seq: int) -> bool:
        """Apply one fill at exec-stream sequence ``seq``; False when it was already applied."""
        self.applied_seq = max(self.applied_seq, seq)
        key = f"{fill.broker_id}\x1f{fill.fill_id}"
        if key in self._fill_keys:
            return False
        self._fill_keys.add(key)
        signed = fill.last_qty * fill.side.sign
        self.accounts.setdefault(fill.account, {}).setdefault(fill.symbol, NetPosition()).apply(
            signed, fill.last_px, fill.commission
        )
        self.strategies.setdefault(fill.account, {}).setdefault(fill.strategy_id, {}).setdefault(
            fill.symbol, NetPosition()
        ).apply(signed, fill.last_px, fill.commission)
        self.fills_applied += 1
        return True

    def skip(self, seq: int) -> None:
        """Record that a non-fill message at ``seq`` was seen."""
        self.applied_seq = max(self.applied_seq, seq)

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            applied_seq=self.applied_seq,
            fills_applied=self.fills_applied,
            accounts=self.accounts,
            strategies=self.strategies,
            fill_keys=sorted(self._fill_keys),
        )

    def positions(
        self, account: str | None = None, strategy_id: str | None = None, by_strategy: bool = False
    ) -> list[Position]:
        out: list[Position] = []
        if by_strategy or strategy_id is not None:
            for acc, strategies in sorted(self.strategies.items()):
                if account is not None and acc != account:
                    continue
                for strat, symbols in sorted(strategies.items()):
                    if strategy_id is not None and strat != strategy_id:
                        continue
                    out.extend(_view(acc, sym, p, strat) for sym, p in sorted(symbols.items()))
            return out
        for acc, symbols in sorted(self.accounts.items()):
            if account is not None and acc != account:
                continue
            out.extend(_view(acc, sym, p, None) for sym, p in sorted(symbols.items()))
        return out


def _view(account: str, symbol: str, p: NetPosition, strategy_id: str | None) -> Position:
    return Position(
        account=account,
        symbol=symbol,
        quantity=p.quantity,
        avg_price=p.avg_price,
        realized_pnl=p.realized_pnl,
        commission=p.commission,
        strategy_id=strategy_id,
        fills=p.fills,
    )
