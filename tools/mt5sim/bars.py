"""Bars (``MqlRates``) built from the simulator's own ticks, for HISTORY DATA and bar subscriptions.

The EA reads them with ``CopyRates``/``CopySpread`` (HistoryInfo.mqh: HistoryInfo; JsonAPI.mq5: StreamPriceData,
which sends the last closed bar, ``CopyRates(symbol, period, 1, 1, rates)``, whenever its time changes). How MT5
builds bars is the terminal's business; here (guess): bid prices, tick_volume = ticks in the bar, spread = the
bar's smallest spread in points, W1 bars start on Sunday and MN1 bars on the 1st, all in server time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tools.mt5sim.engine import Account, Tick

WEEK, MONTH = 604_800, 2_592_000
TIMEFRAMES = {
    "M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600,
    "H8": 28800, "H12": 43200, "D1": 86400, "W1": WEEK, "MN1": MONTH,
}  # fmt: skip
CHART_PERIOD = 3600  # PERIOD_CURRENT, for a chartTF GetTimeframe does not know: the chart's period (guess: H1)


def timeframe_seconds(chart_tf: str) -> int:
    """``GetTimeframe``."""
    return TIMEFRAMES.get(chart_tf, CHART_PERIOD)


def bar_start(time_s: int, period: int) -> int:
    if period == MONTH:
        d = datetime.fromtimestamp(time_s, UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())
    if period == WEEK:  # 1970-01-01 was a Thursday; MT5 weeks start on Sunday
        return (time_s - 3 * 86400) // WEEK * WEEK + 3 * 86400
    return time_s // period * period


@dataclass
class Bar:
    time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    tick_volume: int
    spread: int

    def row(self) -> list[Any]:
        """The EA's ``[time, open, high, low, close, (double) tick_volume, (int) spread]``."""
        return [self.time, self.open, self.high, self.low, self.close, Decimal(self.tick_volume), self.spread]


def _bars(account: Account, symbol: str, ticks: list[Tick], period: int) -> list[Bar]:
    point = account.specs[symbol].point
    out: list[Bar] = []
    for t in ticks:
        start, spread = bar_start(t.time_msc // 1000, period), int((t.ask - t.bid) / point)
        if out and out[-1].time == start:
            b = out[-1]
            b.high, b.low, b.close = max(b.high, t.bid), min(b.low, t.bid), t.bid
            b.tick_volume, b.spread = b.tick_volume + 1, min(b.spread, spread)
        else:
            out.append(Bar(start, t.bid, t.bid, t.bid, t.bid, 1, spread))
    return out


def copy_rates(account: Account, symbol: str, period: int, from_s: int, to_s: int) -> list[Bar] | None:
    """``CopyRates(symbol, period, from, to)``: bars opened in [from, to]; None (-1) for an unknown symbol."""
    if symbol not in account.specs:
        return None
    return [b for b in _bars(account, symbol, list(account.ticks[symbol]), period) if from_s <= b.time <= to_s]


def closed_bar(account: Account, symbol: str, period: int) -> Bar | None:
    """``CopyRates(symbol, period, 1, 1)``: the bar before the current one (None while there is none)."""
    recent: deque[Tick] = deque()
    starts: list[int] = []
    for t in reversed(account.ticks.get(symbol, ())):  # back to the first tick of the previous bar only
        start = bar_start(t.time_msc // 1000, period)
        if not starts or starts[-1] != start:
            if len(starts) == 2:
                break
            starts.append(start)
        recent.appendleft(t)
    bars = _bars(account, symbol, list(recent), period)
    return bars[-2] if len(bars) >= 2 else None
