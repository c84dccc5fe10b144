"""The keeper's books, as pure code: positions, PnL, cash, margin, built from fills alone (no bus).

* **Netting** (one position per account and symbol) or **hedging** (one position per ticket: a fill whose
  ``position_id`` names an open ticket reduces it, any other fill opens a new ticket), per account.
* Average open price; realized PnL on reduce, close and flip. A flipping fill is split: the part that closes
  realizes PnL, the rest opens the new side at the fill price. PnL is ``lots * contract_size * price move`` in
  the instrument's quote currency (contract size 1 for a symbol without a spec).
* Commissions in the quote asset (or with no asset: the account currency) are costs in that currency; a
  commission in the **base** asset changes the quantity held (a buyer receives less, a seller delivers more):
  it is applied as a quantity adjustment at the fill price, and its value at that price is the cost.
* Swaps: charged per lot at each rollover crossed by *stream time* (the ``ts_ns`` of the exec events), so a
  replay charges exactly the same swaps.
* Cash is kept per currency (deposit + realized - commissions - swaps); the account view converts it, the
  unrealized PnL (bid for longs, ask for shorts) and the margin (instrument specs) to the account currency
  with the latest quotes.

Every fill is applied once: fills are deduplicated by ``(broker_id, fill_id)`` and the book records the last
exec-stream sequence it applied (the keeper resumes after it).

Nothing poisons the books: a fill from a broker that is not configured, with a quantity or price that is not
positive, or that would take a position, its notional, cash or commissions beyond what the wire carries
(:data:`~ordermesh.contract.wire.MAX_MAGNITUDE`) is refused with :class:`FillRefused` and changes nothing; the
same check runs on replay, and :meth:`Ledger.poisoned` finds a snapshot written before it. Views never raise on
absurd quotes: an amount they would make unrepresentable is left out and named in ``unpriced``.
"""

from __future__ import annotations

import datetime
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Final, Literal

import msgspec

from ordermesh.contract.wire import MAX_MAGNITUDE, AccountState, EquityPoint, OrderFilled, Position, PositionDiff
from ordermesh.platform.config import AccountSettings, SwapRate
from ordermesh.sizing.instruments import InstrumentSpec, conversion_rate, margin_per_lot
from ordermesh.sizing.kelly import FLOOR

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
TWO: Final = Decimal(2)
NS_PER_DAY: Final = 86_400 * 1_000_000_000

Mode = Literal["netting", "hedging"]
#: (bid, ask) of a symbol, or None when no quote is known.
QuoteOf = Callable[[str], tuple[Decimal, Decimal] | None]


class NetPosition(msgspec.Struct, kw_only=True):
    """One position: the net of a symbol (netting) or one ticket (hedging). Money in the quote currency."""

    quantity: Decimal = ZERO  # signed lots: long > 0, short < 0
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    commission: Decimal = ZERO  # quote-currency commissions (and base-asset ones valued at the fill price)
    swap: Decimal = ZERO  # account currency
    fills: int = 0
    symbol: str = ""
    strategy_id: str | None = None
    position_id: str | None = None
    broker_id: str | None = None

    def trade(self, signed_qty: Decimal, price: Decimal, contract: Decimal) -> Decimal:
        """Apply a signed quantity at ``price``; returns the realized PnL (quote currency). A flip is split:
        the closing part realizes, the remainder opens at ``price``."""
        pos = self.quantity
        new = pos + signed_qty
        realized = ZERO
        if pos == 0 or (pos > 0) == (signed_qty > 0):
            self.avg_price = (pos * self.avg_price + signed_qty * price) / new if new else ZERO
        else:
            closed = min(abs(pos), abs(signed_qty))
            realized = (
                closed * contract * (price - self.avg_price)
                if pos > 0
                else closed * contract * (self.avg_price - price)
            )
            self.realized_pnl += realized
            if new == 0:
                self.avg_price = ZERO
            elif (new > 0) != (pos > 0):
                self.avg_price = price  # flipped: the remainder opens at the fill price
        self.quantity = new
        return realized


class AccountBook(msgspec.Struct, kw_only=True):
    mode: Mode = "netting"
    #: netting: symbol -> position; hedging: position id -> ticket (closed tickets are kept, quantity 0).
    positions: dict[str, NetPosition] = msgspec.field(default_factory=dict)
    #: netting only: strategy -> symbol -> that strategy's own net position.
    strategies: dict[str, dict[str, NetPosition]] = msgspec.field(default_factory=dict)
    realized: dict[str, Decimal] = msgspec.field(default_factory=dict)  # by currency
    commission: dict[str, Decimal] = msgspec.field(default_factory=dict)  # by currency
    swap: Decimal = ZERO  # account currency
    fills: int = 0


class BookSnapshot(msgspec.Struct, kw_only=True):
    applied_seq: int = 0
    fills_applied: int = 0
    clock_ns: int = 0  # stream time: the latest exec event's ts_ns (swaps are charged on rollovers of it)
    accounts: dict[str, AccountBook] = msgspec.field(default_factory=dict)
    #: broker -> symbol -> net quantity over every account (for reconciliation with the broker's positions)
    brokers: dict[str, dict[str, Decimal]] = msgspec.field(default_factory=dict)
    #: Digests (16 bytes each, oldest first) of the most recent fills' ``broker_id`` + ``fill_id``: a bounded
    #: memory of what was applied, so a fill reported again is not applied twice (see :class:`RecentFills`).
    recent_fills: bytes = b""
    fill_keys: list[str] = msgspec.field(default_factory=list)  # older snapshots: every fill key ever (read only)


class RecentFills:
    """The last ``size`` fills applied, as 128-bit digests of ``broker_id``/``fill_id``, in arrival order.

    Bounded so that the snapshot is too (16 bytes a fill; the older layout kept every key and broke NATS's 1 MiB
    message limit after ~85,000 fills). What it guards against is a fill reported twice with two stream messages:
    a republication within the stream's duplicate window (``nats.duplicate_window_s``) is already dropped by
    JetStream (its event id is derived from the fill id), so this catches the later ones, up to ``size`` fills back.
    """

    def __init__(self, size: int, blob: bytes = b"", keys: list[str] | None = None) -> None:
        self.size = max(1, size)
        # a deque for the order and a set for lookups: evicting the oldest is O(1) (deleting a dict's first key
        # over and over is not: its iteration walks the deleted slots)
        self._order: deque[bytes] = deque()
        self._seen: set[bytes] = set()
        for i in range(0, len(blob) - len(blob) % 16, 16):
            self._remember(blob[i : i + 16])
        for key in keys or ():
            self._remember(self.digest(key))

    @staticmethod
    def digest(key: str) -> bytes:
        return hashlib.blake2b(key.encode(), digest_size=16).digest()

    def _remember(self, d: bytes) -> None:
        self._seen.add(d)
        self._order.append(d)
        if len(self._order) > self.size:
            self._seen.discard(self._order.popleft())

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it is among the recent ones already."""
        d = self.digest(key)
        if d in self._seen:
            return False
        self._remember(d)
        return True

    def __contains__(self, d: bytes) -> bool:
        return d in self._seen

    def remember(self, d: bytes) -> None:
        """Remember the digest ``d`` (not among the recent ones: check with ``in`` first)."""
        self._remember(d)

    def blob(self) -> bytes:
        return b"".join(self._order)


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """What the books need to know besides the fills."""

    accounts: dict[str, AccountSettings] = msgspec.field(default_factory=dict)
    specs: dict[str, InstrumentSpec] = msgspec.field(default_factory=dict)
    swaps: dict[str, SwapRate] = msgspec.field(default_factory=dict)
    rollover_hour_utc: int = 22
    triple_swap_weekday: int = 2  # Wednesday (Monday = 0): three nights are charged
    #: The configured broker ids: a fill from any other is refused. None: not checked.
    brokers: frozenset[str] | None = None


class FillRefused(ValueError):
    """A fill the books refuse (nothing changed). ``reason`` is a metric label: ``unknown_broker`` (a broker id
    not configured), ``bad_fill`` (a quantity or price that is not positive), ``out_of_bounds`` (it would make a
    position, its notional, cash or commissions non-finite or beyond what the wire carries)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def fits(x: Decimal) -> bool:
    """Finite and below :data:`MAX_MAGNITUDE` in magnitude: an amount the books keep and the wire carries."""
    return x.is_finite() and -MAX_MAGNITUDE < x < MAX_MAGNITUDE


class _Sym(msgspec.Struct, frozen=True):
    contract: Decimal
    base: str | None
    quote: str | None


def _add(d: dict[str, Decimal], key: str, amount: Decimal) -> None:
    d[key] = d.get(key, ZERO) + amount


#: What one fill makes of the books, worked out before any of it is kept (see ``Ledger._work_out``).
_Change = tuple[
    "AccountBook",
    list[tuple[str, "NetPosition"]],
    "NetPosition | None",
    dict[str, Decimal],
    dict[str, Decimal],
    Decimal,
]


class Ledger:
    """The books of every account. ``apply_fill`` is the per-fill hot path (replay speed matters)."""

    def __init__(
        self, snapshot: BookSnapshot | None = None, rules: Rules | None = None, *, recent_fills: int = 20_000
    ) -> None:
        snap = snapshot or BookSnapshot()
        self.rules = rules or Rules()
        self.applied_seq = snap.applied_seq
        self.fills_applied = snap.fills_applied
        self.clock_ns = snap.clock_ns
        self.books = snap.accounts
        self.brokers = snap.brokers
        self._recent = RecentFills(recent_fills, snap.recent_fills, snap.fill_keys)
        self._syms: dict[str, _Sym] = {}

    # ------------------------------------------------------------------------------ applying

    def _sym(self, symbol: str) -> _Sym:
        s = self._syms.get(symbol)
        if s is None:
            spec = self.rules.specs.get(symbol)
            s = (
                _Sym(ONE, None, None)
                if spec is None
                else _Sym(spec.contract_size, spec.base_currency, spec.quote_currency)
            )
            self._syms[symbol] = s
        return s

    def settings(self, account: str) -> AccountSettings:
        return self.rules.accounts.get(account) or AccountSettings()

    def book(self, account: str) -> AccountBook:
        b = self.books.get(account)
        if b is None:
            b = self.books[account] = AccountBook(mode=self.settings(account).mode)
        return b

    def apply_fill(self, fill: OrderFilled, seq: int = 0, ts_ns: int | None = None) -> bool:
        """Apply one fill at exec-stream sequence ``seq``; False when it was already applied. ``ts_ns`` is its
        stream time (default: the fill's own ``ts_ns``). Raises :class:`FillRefused` (nothing changed but the
        sequence and the clock) for a fill the books must not take.

        The fill is worked out on copies of what it changes, checked, and only then put in the books."""
        if seq > self.applied_seq:
            self.applied_seq = seq
        digest = self._recent.digest(f"{fill.broker_id}\x1f{fill.fill_id}")
        if digest in self._recent:
            return False
        ts = fill.ts_ns if ts_ns is None else ts_ns
        if ts > self.clock_ns:
            self.advance(ts)
        brokers = self.rules.brokers
        if brokers is not None and fill.broker_id not in brokers:
            raise FillRefused("unknown_broker", f"fill {fill.fill_id} from broker {fill.broker_id!r}, not configured")
        if not (fill.last_qty > 0 and fill.last_px > 0):
            raise FillRefused("bad_fill", f"fill {fill.fill_id}: quantity {fill.last_qty} at {fill.last_px}")
        try:
            change = self._work_out(fill)
        except (ArithmeticError, ValueError) as exc:
            change = f"{type(exc).__name__}: {exc}"
        if isinstance(change, str):
            raise FillRefused("out_of_bounds", f"fill {fill.fill_id} ({fill.last_qty} at {fill.last_px}): {change}")
        book, positions, strategy, realizeds, commissions, net = change
        self.books[fill.account] = book
        for key, p in positions:
            book.positions[key] = p
        if strategy is not None:
            book.strategies.setdefault(fill.strategy_id, {})[fill.symbol] = strategy
        book.realized.update(realizeds)
        book.commission.update(commissions)
        self.brokers.setdefault(fill.broker_id, {})[fill.symbol] = net
        self._recent.remember(digest)
        book.fills += 1
        self.fills_applied += 1
        return True

    def _work_out(self, fill: OrderFilled) -> _Change | str:
        """What ``fill`` makes of the books, on copies: (the account's book, its positions (key, position), the
        strategy's own position (netting), realized PnL and commissions by currency, the broker's net quantity);
        or what it would make unrepresentable."""
        book = self.books.get(fill.account) or AccountBook(mode=self.settings(fill.account).mode)
        sym = self._sym(fill.symbol)
        contract = sym.contract
        quote_ccy = sym.quote or self.settings(fill.account).currency
        px = fill.last_px
        legs = [(fill.last_qty * fill.side.sign, px)]
        commission = fill.commission
        position_commission = ZERO
        commissions: dict[str, Decimal] = {}  # currency -> the account's commissions in it, with this fill's
        if commission:
            asset = fill.commission_asset or self.settings(fill.account).currency
            if asset == sym.base and sym.base is not None:
                # Paid in the asset traded: the quantity held changes by it, its value at the fill price is the cost.
                legs.append((-commission / contract, px))
                position_commission = commission * px
                commissions[quote_ccy] = book.commission.get(quote_ccy, ZERO) + position_commission
            else:
                commissions[asset] = book.commission.get(asset, ZERO) + commission
                if asset == quote_ccy:
                    position_commission = commission
        strategy: NetPosition | None = None
        if book.mode == "netting":
            found = book.positions.get(fill.symbol)
            pos = NetPosition(symbol=fill.symbol) if found is None else msgspec.structs.replace(found)
            found = book.strategies.get(fill.strategy_id, {}).get(fill.symbol)
            strategy = (
                NetPosition(symbol=fill.symbol, strategy_id=fill.strategy_id)
                if found is None
                else msgspec.structs.replace(found)
            )
            realized = ZERO
            for qty, price in legs:
                realized += pos.trade(qty, price, contract)
                strategy.trade(qty, price, contract)
            for p in (pos, strategy):
                p.commission += position_commission
                p.fills += 1
            positions = [(fill.symbol, pos)]
        else:
            positions, realized = self._hedging(book, fill, legs, contract, position_commission)
        realizeds = {quote_ccy: book.realized.get(quote_ccy, ZERO) + realized} if realized else {}
        net = self.brokers.get(fill.broker_id, {}).get(fill.symbol, ZERO)
        for qty, _ in legs:
            net += qty
        # what the fill changed must stay representable (a NaN never gets here: finite inputs give finite results
        # or raise)
        top = MAX_MAGNITUDE
        for p in [p for _, p in positions] + ([strategy] if strategy is not None else []):
            notional = abs(p.quantity) * contract * p.avg_price
            if not (notional < top and -top < p.realized_pnl < top and -top < p.commission < top):
                return f"the {p.symbol} position would hold {p.quantity} at {p.avg_price} (notional {notional:.6E})"
        for ccy in {**realizeds, **commissions}:
            r = realizeds.get(ccy, book.realized.get(ccy, ZERO))
            c = commissions.get(ccy, book.commission.get(ccy, ZERO))
            if not (-top < r < top and -top < c < top and -top < r - c < top):
                return f"cash in {ccy} would be {r} realized, {c} commissions"
        if not -top < net < top:
            return f"the net {fill.symbol} at {fill.broker_id} would be {net}"
        return book, positions, strategy, realizeds, commissions, net

    def _hedging(
        self,
        book: AccountBook,
        fill: OrderFilled,
        legs: list[tuple[Decimal, Decimal]],
        contract: Decimal,
        position_commission: Decimal,
    ) -> tuple[list[tuple[str, NetPosition]], Decimal]:
        """The tickets ``fill`` changes or opens (copies), and the PnL it realizes."""
        found = book.positions.get(fill.position_id) if fill.position_id else None
        if found is not None and (found.quantity == 0 or found.symbol != fill.symbol):
            found = None
        if found is None:
            pid = fill.position_id or fill.fill_id
            if pid in book.positions:  # an id reused after its ticket closed: a new ticket of its own
                pid = f"{pid}:{fill.fill_id}"
            ticket = NetPosition(
                symbol=fill.symbol, strategy_id=fill.strategy_id, position_id=pid, broker_id=fill.broker_id
            )
        else:
            ticket = msgspec.structs.replace(found)
        out = [(ticket.position_id, ticket)]
        realized = ZERO
        for qty, price in legs:
            pos = ticket.quantity
            if pos != 0 and (pos > 0) != (qty > 0) and abs(qty) > abs(pos):
                # A ticket cannot flip: the excess opens a ticket of its own (the fill is split).
                realized += ticket.trade(-pos, price, contract)
                rest = NetPosition(
                    symbol=fill.symbol,
                    strategy_id=fill.strategy_id,
                    position_id=f"{ticket.position_id}:{fill.fill_id}",
                    broker_id=fill.broker_id,
                )
                rest.trade(qty + pos, price, contract)
                rest.fills = 1
                out.append((rest.position_id, rest))
            else:
                realized += ticket.trade(qty, price, contract)
        ticket.commission += position_commission
        ticket.fills += 1
        return out, realized  # type: ignore[return-value]

    def poisoned(self) -> str:
        """What in these books is non-finite or beyond the wire's bounds ("" if nothing): a snapshot written
        before fills were checked may hold such values, and is then rebuilt from the stream instead."""
        for account, book in self.books.items():
            views = [book.positions.values(), *(s.values() for s in book.strategies.values())]
            for positions in views:
                for p in positions:
                    for name in ("quantity", "avg_price", "realized_pnl", "commission", "swap"):
                        if not fits(getattr(p, name)):
                            return f"account {account}: {name} of {p.symbol} is {getattr(p, name)}"
            for label, amounts in (("realized", book.realized), ("commission", book.commission)):
                for ccy, v in amounts.items():
                    if not fits(v):
                        return f"account {account}: {label} in {ccy} is {v}"
            if not fits(book.swap):
                return f"account {account}: swap is {book.swap}"
        for broker, net in self.brokers.items():
            for symbol, qty in net.items():
                if not fits(qty):
                    return f"broker {broker}: net {symbol} is {qty}"
        return ""

    def skip(self, seq: int, ts_ns: int = 0) -> None:
        """Record that a non-fill message at ``seq`` was seen (its time still moves the stream clock)."""
        if seq > self.applied_seq:
            self.applied_seq = seq
        if ts_ns > self.clock_ns:
            self.advance(ts_ns)

    # ---------------------------------------------------------------------------------- swaps

    def rollovers(self, start_ns: int, end_ns: int) -> list[int]:
        """Multipliers of the rollovers in (start, end]: 1 a night, 3 on the triple-swap weekday."""
        offset = self.rules.rollover_hour_utc * 3_600_000_000_000
        first = (start_ns - offset) // NS_PER_DAY + 1
        last = (end_ns - offset) // NS_PER_DAY
        out = []
        for day in range(first, last + 1):
            weekday = datetime.datetime.fromtimestamp(day * 86_400, datetime.UTC).weekday()
            out.append(3 if weekday == self.rules.triple_swap_weekday else 1)
        return out

    def advance(self, ts_ns: int) -> Decimal:
        """Move stream time to ``ts_ns``, charging swaps for every rollover crossed; returns the total charged."""
        start, self.clock_ns = self.clock_ns, max(self.clock_ns, ts_ns)
        if start == 0 or not self.rules.swaps:
            return ZERO
        nights = sum(self.rollovers(start, self.clock_ns))
        if not nights:
            return ZERO
        return self.charge_swaps(nights)

    def charge_swaps(self, nights: int) -> Decimal:
        """Charge ``nights`` nights of swap on every open position (account currency; negative: a credit)."""
        total = ZERO
        for book in self.books.values():
            views = [book.positions.values()]
            if book.mode == "netting":
                views += [s.values() for s in book.strategies.values()]
            for i, positions in enumerate(views):
                for p in positions:
                    rate = self.rules.swaps.get(p.symbol)
                    if rate is None or p.quantity == 0:
                        continue
                    charge = abs(p.quantity) * (rate.long if p.quantity > 0 else rate.short) * nights
                    p.swap += charge
                    if i == 0:  # the account's own positions (the strategy views are the same money)
                        book.swap += charge
                        total += charge
        return total

    # ---------------------------------------------------------------------------------- views

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            applied_seq=self.applied_seq,
            fills_applied=self.fills_applied,
            clock_ns=self.clock_ns,
            accounts=self.books,
            brokers=self.brokers,
            recent_fills=self._recent.blob(),
        )

    def position(self, account: str, key: str, strategy_id: str | None = None) -> NetPosition | None:
        book = self.books.get(account)
        if book is None:
            return None
        if strategy_id is not None:
            return book.strategies.get(strategy_id, {}).get(key)
        return book.positions.get(key)

    def positions(
        self,
        account: str | None = None,
        strategy_id: str | None = None,
        by_strategy: bool = False,
        quote_of: QuoteOf | None = None,
        include_flat: bool = True,
    ) -> list[Position]:
        out: list[Position] = []
        for acc, book in sorted(self.books.items()):
            if account is not None and acc != account:
                continue
            items: list[NetPosition]
            if book.mode == "netting" and (by_strategy or strategy_id is not None):
                items = [
                    p
                    for strat, symbols in sorted(book.strategies.items())
                    if strategy_id is None or strat == strategy_id
                    for _, p in sorted(symbols.items())
                ]
            else:
                items = [p for _, p in sorted(book.positions.items())]
                if strategy_id is not None:
                    items = [p for p in items if p.strategy_id == strategy_id]
                if book.mode == "hedging":
                    items = [p for p in items if p.quantity != 0]
            for p in items:
                if include_flat or p.quantity != 0:
                    out.append(self._view(acc, p, by_strategy or strategy_id is not None, quote_of))
        return out

    def _view(self, account: str, p: NetPosition, per_strategy: bool, quote_of: QuoteOf | None) -> Position:
        mark = _mark(p.quantity, quote_of(p.symbol) if quote_of else None)
        unrealized = ZERO if mark is None else p.quantity * self._sym(p.symbol).contract * (mark - p.avg_price)
        if not fits(unrealized):  # an absurd quote: the position is shown unmarked
            mark, unrealized = None, ZERO
        return Position(
            account=account,
            symbol=p.symbol,
            quantity=p.quantity,
            avg_price=p.avg_price,
            realized_pnl=p.realized_pnl,
            commission=p.commission,
            strategy_id=p.strategy_id if (per_strategy or p.position_id) else None,
            fills=p.fills,
            position_id=p.position_id,
            swap=p.swap,
            mark_price=mark,
            unrealized_pnl=unrealized,
        )

    def net_by_symbol(self, account: str, strategy_id: str | None = None) -> dict[str, Decimal]:
        """Open net quantity per symbol (hedging tickets summed)."""
        out: dict[str, Decimal] = {}
        for p in self.positions(account, strategy_id):
            if p.quantity:
                _add(out, p.symbol, p.quantity)
        return out

    def account_state(self, account: str, quote_of: QuoteOf, ts_ns: int | None = None) -> AccountState:
        """Balance = deposit + realized - commissions - swaps; equity = balance + unrealized (bid for longs,
        ask for shorts); margin from the instrument specs; all in the account currency at the latest quotes.
        Amounts that cannot be converted (no quote, or a quote that would make a figure unrepresentable) are left
        out and named in ``unpriced``: a state that can always be published."""
        settings = self.settings(account)
        ccy = settings.currency
        book = self.books.get(account) or AccountBook(mode=settings.mode)
        unpriced: list[str] = []

        def price_of(pair: str) -> Decimal | None:
            q = quote_of(pair)
            return None if q is None else (q[0] + q[1]) / TWO

        def convert(amount: Decimal, from_ccy: str) -> Decimal | None:
            if from_ccy == ccy or not amount:
                return amount
            try:
                rate = conversion_rate(from_ccy, ccy, price_of)
                converted = None if rate is None else amount * rate
            except ArithmeticError:  # a rate from an absurd quote
                converted = None
            if converted is None:
                unpriced.append(from_ccy)
            return converted

        def total(amounts: Iterable[tuple[str, Decimal | None]]) -> Decimal:
            """The sum of the amounts that could be converted; one that would make it unrepresentable (an absurd
            quote) is left out and named, as an amount without a quote is."""
            out = ZERO
            for name, amount in amounts:
                if amount is None:
                    continue
                if fits(amount) and fits(out + amount):
                    out += amount
                else:
                    unpriced.append(name)
            return out

        realized = total((c, convert(v, c)) for c, v in sorted(book.realized.items()))
        commission = total((c, convert(v, c)) for c, v in sorted(book.commission.items()))
        balance = settings.deposit + realized - commission - book.swap
        if not fits(balance):  # unreachable through checked fills; never a state that cannot be published
            unpriced += sorted(set(book.realized) | set(book.commission))
            realized = commission = ZERO
            balance = settings.deposit - book.swap
        marked: list[tuple[str, Decimal | None]] = []
        margins: list[tuple[str, Decimal | None]] = []
        for p in book.positions.values():
            if p.quantity == 0:
                continue
            q = quote_of(p.symbol)
            sym = self._sym(p.symbol)
            mark = _mark(p.quantity, q)
            if mark is None:
                unpriced.append(p.symbol)
                continue
            marked.append((p.symbol, convert(p.quantity * sym.contract * (mark - p.avg_price), sym.quote or ccy)))
            spec = self.rules.specs.get(p.symbol)
            if spec is not None:
                try:
                    per_lot, _ = margin_per_lot(spec, ccy, (q[0] + q[1]) / TWO, price_of)  # type: ignore[index]
                except (LookupError, ArithmeticError):
                    unpriced.append(p.symbol)
                    continue
                margins.append((p.symbol, FLOOR.multiply(abs(p.quantity), per_lot)))
        unrealized = total(marked)
        equity = balance + unrealized
        if not fits(equity):
            unpriced += [name for name, _ in marked]
            unrealized, equity = ZERO, balance
        margin = total(margins)
        if not fits(equity - margin):
            unpriced += [name for name, _ in margins]
            margin = ZERO
        return AccountState(
            account=account,
            currency=ccy,
            balance=balance,
            equity=equity,
            margin_used=margin,
            free_margin=equity - margin,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            commission=commission,
            applied_seq=self.applied_seq,
            swap=book.swap,
            deposit=settings.deposit,
            fills=book.fills,
            mode=book.mode,
            unpriced=sorted(set(unpriced)),
            **({"ts_ns": ts_ns} if ts_ns is not None else {}),
        )


def _mark(quantity: Decimal, quote: tuple[Decimal, Decimal] | None) -> Decimal | None:
    """The price a position would close at: the bid for a long, the ask for a short."""
    if quote is None or quantity == 0:
        return None
    return quote[0] if quantity > 0 else quote[1]


def equity_point(state: AccountState, reason: str, fills_applied: int) -> EquityPoint:
    return EquityPoint(
        account=state.account,
        currency=state.currency,
        balance=state.balance,
        equity=state.equity,
        unrealized_pnl=state.unrealized_pnl,
        margin_used=state.margin_used,
        free_margin=state.free_margin,
        applied_seq=state.applied_seq,
        fills_applied=fills_applied,
        reason=reason,
        ts_ns=state.ts_ns,
    )


def reconcile(
    broker_id: str, keeper: Mapping[str, Decimal], broker: Iterable[tuple[str, Decimal]]
) -> list[PositionDiff]:
    """Differences between the keeper's net quantity per symbol and the broker's (zero on both sides: none)."""
    theirs: dict[str, Decimal] = {}
    for symbol, qty in broker:
        _add(theirs, symbol, qty)
    out = []
    for symbol in sorted(set(keeper) | set(theirs)):
        mine, other = keeper.get(symbol, ZERO), theirs.get(symbol, ZERO)
        if mine != other:
            out.append(
                PositionDiff(
                    broker_id=broker_id, symbol=symbol, keeper_qty=mine, broker_qty=other, difference=mine - other
                )
            )
    return out


def drawdown(equity: list[float]) -> list[float]:
    """Drawdown from the running peak at each point (statistics: floats), as a positive number."""
    peak = float("-inf")
    out = []
    for e in equity:
        peak = max(peak, e)
        out.append(peak - e)
    return out
