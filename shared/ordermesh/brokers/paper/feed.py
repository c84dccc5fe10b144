"""Market data of the paper venue (pure, deterministic): order books per symbol, from a seeded random walk or
replayed from a CSV file.

* :class:`SyntheticFeed`: the mid of each symbol walks by up to ``volatility_ticks`` ticks a step (never below
  two ticks plus the spread); the touch is the mid -/+ half the spread on the tick grid, and the book below it
  follows the symbol's :class:`DepthProfile` (levels ``step_ticks`` apart with the profile's sizes). The n-th
  book depends only on (seed, n).
* :class:`ReplayFeed`: books read from a CSV file (``seq,symbol,bids,asks``; ``bids``/``asks`` are
  space-separated ``price@size`` levels, best first). A row with one level a side is a quote, extended below the
  touch by the depth profile; a level without ``@size`` takes the profile's size. Each step moves to the next
  ``seq``; at the end the file starts again.

Both keep the books of the last ``history`` steps, so the venue can find the quote at an intent's decision time
(:meth:`Feed.book_at`). ``clock`` (nanoseconds) is injectable for tests.
"""

from __future__ import annotations

import csv
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

import msgspec

from ordermesh.brokers.model import BookLevel, OrderBook
from ordermesh.contract.wire import Quote
from ordermesh.platform.config import ConfigError, FeedSymbol

TWO: Final = Decimal(2)


class DepthProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The shape of a synthetic book side: ``sizes[i]`` lots at level ``i`` (the last size repeats up to
    ``levels``), each level ``step_ticks`` ticks further from the touch."""

    levels: int = 5
    step_ticks: int = 1
    sizes: list[Decimal] = msgspec.field(default_factory=lambda: [Decimal(1)])

    def __post_init__(self) -> None:
        if self.levels < 1 or self.step_ticks < 1:
            raise ValueError(f"depth needs levels >= 1 and step_ticks >= 1, got {self.levels}, {self.step_ticks}")
        if not self.sizes or any(not s.is_finite() or s <= 0 for s in self.sizes):
            raise ValueError(f"depth sizes must be positive, got {self.sizes}")

    def size(self, level: int) -> Decimal:
        return self.sizes[min(level, len(self.sizes) - 1)]


def profile_for(profiles: Mapping[str, DepthProfile], symbol: str, spec: FeedSymbol) -> DepthProfile:
    """The symbol's own profile, else the first matching pattern, else one level of ``spec.size``."""
    import fnmatch

    found = profiles.get(symbol)
    if found is not None:
        return found
    for pattern, profile in profiles.items():
        if fnmatch.fnmatchcase(symbol, pattern):
            return profile
    return DepthProfile(levels=1, sizes=[spec.size])


def build_book(
    symbol: str,
    bid: Decimal,
    ask: Decimal,
    tick: Decimal,
    profile: DepthProfile,
    ts_ns: int,
    *,
    bid_top: Decimal | None = None,
    ask_top: Decimal | None = None,
) -> OrderBook:
    """A book whose touch is ``bid``/``ask`` and whose levels follow ``profile``."""
    step = tick * profile.step_ticks
    bids, asks = [], []
    for i in range(profile.levels):
        b = bid - step * i
        if b > 0:
            bids.append(BookLevel(b, bid_top if i == 0 and bid_top is not None else profile.size(i)))
        asks.append(BookLevel(ask + step * i, ask_top if i == 0 and ask_top is not None else profile.size(i)))
    return OrderBook(symbol=symbol, bids=bids, asks=asks, ts_ns=ts_ns)


def book_quote(broker_id: str, book: OrderBook) -> Quote:
    return Quote(
        broker_id=broker_id,
        symbol=book.symbol,
        bid=book.bids[0].price,
        ask=book.asks[0].price,
        bid_size=book.bids[0].size,
        ask_size=book.asks[0].size,
        ts_ns=book.ts_ns,
    )


def book_mid(book: OrderBook) -> Decimal:
    return (book.bids[0].price + book.asks[0].price) / TWO


class Feed:
    """Books per symbol, advanced one step at a time; remembers the last ``history`` books per symbol."""

    def __init__(
        self,
        broker_id: str,
        symbols: Mapping[str, FeedSymbol],
        profiles: Mapping[str, DepthProfile],
        *,
        clock: Callable[[], int] = time.time_ns,
        history: int = 3000,
    ) -> None:
        self.broker_id = broker_id
        self.specs = dict(symbols)
        self.profiles = {s: profile_for(profiles, s, spec) for s, spec in self.specs.items()}
        self.clock = clock
        self.steps = 0
        self._books: dict[str, OrderBook] = {}
        self._history: dict[str, deque[OrderBook]] = {s: deque(maxlen=history) for s in self.specs}

    def _set(self, book: OrderBook) -> None:
        self._books[book.symbol] = book
        self._history[book.symbol].append(book)

    def book(self, symbol: str) -> OrderBook:
        return self._books[symbol]

    def quote(self, symbol: str) -> Quote:
        return book_quote(self.broker_id, self._books[symbol])

    def marks(self) -> dict[str, Decimal]:
        """The mids to store for a restart (a replayed feed has none: it replays from its file)."""
        return {}

    def resume(self, marks: Mapping[str, Decimal]) -> None:
        """Continue from stored mids; a replayed feed replays from its file instead."""

    def mid(self, symbol: str) -> Decimal | None:
        book = self._books.get(symbol)
        return None if book is None else book_mid(book)

    def book_at(self, symbol: str, ts_ns: int) -> OrderBook:
        """The book that was current at ``ts_ns`` (the latest one not after it); the current book when ``ts_ns``
        is unknown (0) or later than every book, the oldest kept when earlier than all."""
        books = self._history[symbol]
        if ts_ns <= 0 or not books or ts_ns >= books[-1].ts_ns:
            return self._books[symbol]
        found = books[0]
        for b in books:
            if b.ts_ns > ts_ns:
                break
            found = b
        return found

    def step(self) -> list[OrderBook]:
        """Advance every symbol one step, in symbol order; returns the new books."""
        raise NotImplementedError


class SyntheticFeed(Feed):
    """Seeded random walk of the mid with the configured spread and depth profile."""

    def __init__(
        self,
        broker_id: str,
        symbols: Mapping[str, FeedSymbol],
        seed: int,
        profiles: Mapping[str, DepthProfile] | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        history: int = 3000,
    ) -> None:
        super().__init__(broker_id, symbols, profiles or {}, clock=clock, history=history)
        self._rng = random.Random(seed)
        self._mid = {sym: spec.initial_price for sym, spec in self.specs.items()}
        now = clock()
        for sym in sorted(self.specs):
            self._set(self._make(sym, now))

    def _make(self, symbol: str, ts_ns: int) -> OrderBook:
        spec = self.specs[symbol]
        half = (spec.spread / 2).quantize(spec.tick_size)
        bid = self._mid[symbol] - half
        return build_book(symbol, bid, bid + spec.spread, spec.tick_size, self.profiles[symbol], ts_ns)

    def marks(self) -> dict[str, Decimal]:
        return dict(self._mid)

    def resume(self, marks: Mapping[str, Decimal]) -> None:
        """Continue the walk from stored mids (a restart), not from ``initial_price``."""
        now = self.clock()
        for sym, mid in marks.items():
            spec = self.specs.get(sym)
            if spec is not None and mid.is_finite() and mid > spec.tick_size * 2 + spec.spread:
                self._mid[sym] = mid.quantize(spec.tick_size)
                self._set(self._make(sym, now))

    def step(self) -> list[OrderBook]:
        self.steps += 1
        now = self.clock()
        out = []
        for sym in sorted(self.specs):
            spec = self.specs[sym]
            move = self._rng.randint(-spec.volatility_ticks, spec.volatility_ticks)
            self._mid[sym] = max(spec.tick_size * 2 + spec.spread, self._mid[sym] + spec.tick_size * move)
            book = self._make(sym, now)
            self._set(book)
            out.append(book)
        return out


# ------------------------------------------------------------------------------------------- replay

Row = tuple[list[tuple[Decimal, Decimal | None]], list[tuple[Decimal, Decimal | None]]]


def _levels(text: str, where: str) -> list[tuple[Decimal, Decimal | None]]:
    out: list[tuple[Decimal, Decimal | None]] = []
    for part in text.split():
        price_s, _, size_s = part.partition("@")
        try:
            price = Decimal(price_s)
            size = Decimal(size_s) if size_s else None
        except InvalidOperation:
            raise ConfigError(f"{where}: bad level {part!r} (expected price or price@size)") from None
        if not price.is_finite() or price <= 0 or (size is not None and (not size.is_finite() or size <= 0)):
            raise ConfigError(f"{where}: bad level {part!r} (price and size must be positive)")
        out.append((price, size))
    if not out:
        raise ConfigError(f"{where}: no levels")
    return out


def load_book_csv(path: str | Path, symbols: Mapping[str, FeedSymbol]) -> list[dict[str, Row]]:
    """The steps of a replay file: for each ``seq`` (in order), the book levels of each symbol in that row.

    Raises ConfigError naming the file and line on any problem (unknown symbol, crossed book, bad number)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read replay file {path}: {exc.strerror}") from None
    steps: dict[int, dict[str, Row]] = {}
    reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    if reader.fieldnames is None or {"seq", "symbol", "bids", "asks"} - set(reader.fieldnames):
        raise ConfigError(f"{path}: the header must be seq,symbol,bids,asks")
    for n, row in enumerate(reader, 2):
        where = f"{path} line {n}"
        symbol = row["symbol"]
        if symbol not in symbols:
            raise ConfigError(f"{where}: symbol {symbol!r} is not configured for the venue")
        try:
            seq = int(row["seq"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: seq must be an integer, got {row['seq']!r}") from None
        bids, asks = _levels(row["bids"] or "", where), _levels(row["asks"] or "", where)
        if bids[0][0] >= asks[0][0]:
            raise ConfigError(f"{where}: crossed book (bid {bids[0][0]} >= ask {asks[0][0]})")
        steps.setdefault(seq, {})[symbol] = (bids, asks)
    if not steps:
        raise ConfigError(f"{path}: no rows")
    return [steps[k] for k in sorted(steps)]


class ReplayFeed(Feed):
    """Books replayed from a CSV file, one ``seq`` per step, starting again at the end. A symbol absent from a
    step keeps its last book; every symbol must appear in the first step."""

    def __init__(
        self,
        broker_id: str,
        symbols: Mapping[str, FeedSymbol],
        steps: list[dict[str, Row]],
        profiles: Mapping[str, DepthProfile] | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        history: int = 3000,
    ) -> None:
        super().__init__(broker_id, symbols, profiles or {}, clock=clock, history=history)
        missing = sorted(set(self.specs) - set(steps[0]))
        if missing:
            raise ConfigError(f"replay file: the first seq has no book for {', '.join(missing)}")
        self._steps = steps
        self._pos = 0
        self._apply(steps[0], clock())

    def _apply(self, step: dict[str, Row], now: int) -> list[OrderBook]:
        out = []
        for sym in sorted(step):
            bids, asks = step[sym]
            spec, profile = self.specs[sym], self.profiles[sym]
            if len(bids) == 1 and len(asks) == 1:
                book = build_book(
                    sym, bids[0][0], asks[0][0], spec.tick_size, profile, now, bid_top=bids[0][1], ask_top=asks[0][1]
                )
            else:
                book = OrderBook(
                    symbol=sym,
                    bids=[BookLevel(p, s if s is not None else profile.size(i)) for i, (p, s) in enumerate(bids)],
                    asks=[BookLevel(p, s if s is not None else profile.size(i)) for i, (p, s) in enumerate(asks)],
                    ts_ns=now,
                )
            self._set(book)
            out.append(book)
        return out

    def step(self) -> list[OrderBook]:
        self.steps += 1
        self._pos = (self._pos + 1) % len(self._steps)
        return self._apply(self._steps[self._pos], self.clock())
