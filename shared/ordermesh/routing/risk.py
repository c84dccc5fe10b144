"""Pre-trade risk: small rules, each with its own reason category, over a plain view of the router's state.

A rule answers ``None`` (pass) or the detail of its refusal; the engine turns the first refusal into
``CATEGORY: detail``. Rules read only :class:`RiskView` (positions, open orders, quotes, account state,
trading states, rate buckets), so they are pure and tested without a bus. Limits are configured per account
(:class:`RiskLimits`); a limit left unset is not checked.
"""

from __future__ import annotations

import fnmatch
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Protocol

import msgspec

from ordermesh.contract.wire import AccountState, OrderType, Quote, RejectCategory, Side, TimeInForce, TradingState

ZERO: Final = Decimal(0)


# ------------------------------------------------------------------------------------ configuration


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Rate(_Cfg):
    """A token bucket: ``per_second`` sustained, ``burst`` at once."""

    per_second: float
    burst: int


class SymbolLimits(_Cfg):
    max_order_notional: Decimal | None = None  # per order, in the account currency
    max_net_position: Decimal | None = None  # lots, |net| after the order and every open order on its side
    max_gross_position: Decimal | None = None  # lots, sum over strategies of |position|, worst case


class RiskLimits(_Cfg):
    """Limits of one account. ``symbols`` and ``strategies`` are keyed by name or fnmatch pattern (``*``)."""

    max_order_notional: Decimal | None = None
    #: The account's gross exposure in its currency: over every symbol and strategy together, the worst-case
    #: |position| after every open order (and the new one), valued at the mid.
    max_gross_notional: Decimal | None = None
    symbols: dict[str, SymbolLimits] = msgspec.field(default_factory=dict)
    #: Per-strategy limits on each symbol (net and gross position of that strategy alone).
    strategies: dict[str, SymbolLimits] = msgspec.field(default_factory=dict)
    max_open_orders: int | None = None
    max_open_orders_per_strategy: int | None = None
    submit_rate_per_strategy: Rate | None = None
    submit_rate_per_broker: Rate | None = None
    cancel_rate_per_strategy: Rate | None = None
    cancel_rate_per_broker: Rate | None = None
    #: A limit price more than this fraction away from the last quote's mid is refused (0.05 = 5 %).
    price_collar: Decimal | None = Decimal("0.05")
    check_margin: bool = True
    #: Loss since the start of the UTC day (equity) at which the account is halted.
    daily_loss_limit: Decimal | None = None
    #: When the daily loss limit is reached, the router runs the kill switch itself: the account REDUCING, its open
    #: orders canceled, its position flattened reduce-only, then HALTED.
    kill_on_daily_loss: bool = False


def match(table: Mapping[str, SymbolLimits], name: str) -> SymbolLimits | None:
    """Exact name first, then the first matching pattern in file order."""
    if name in table:
        return table[name]
    for pattern, limits in table.items():
        if fnmatch.fnmatchcase(name, pattern):
            return limits
    return None


# ----------------------------------------------------------------------------------------- state


class Instrument(Protocol):
    lot_step: Decimal
    min_lot: Decimal
    max_lot: Decimal
    contract_size: Decimal
    min_notional: Decimal | None  # the venue's smallest order value, in the quote currency, when known


@dataclass(frozen=True, slots=True)
class OrderToCheck:
    account: str
    strategy_id: str
    broker_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at_ns: int | None = None
    reduce_only: bool = False
    #: A hedging close: the broker position (ticket) the order closes. The broker closes that ticket and never
    #: flips it, so such an order is checked against the ticket, not against the account's net.
    position_id: str | None = None


def closes_ticket(order: OrderToCheck) -> bool:
    """A reduce-only order naming its ticket: it can only shrink that position, whatever the net does."""
    return order.reduce_only and order.position_id is not None


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate.per_second
        self.burst = float(rate.burst)
        self.tokens = self.burst
        self.stamp = now

    def available(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def take(self, now: float) -> None:
        self.tokens = self.available(now) - 1
        self.stamp = now


class Exposure:
    """Positions and open-order exposure, kept incrementally by the router."""

    def __init__(self) -> None:
        self.net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (account, symbol)
        self.strategy_net: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)  # (account, strategy, symbol)
        self.open_leaves: dict[tuple[str, str, Side], Decimal] = defaultdict(Decimal)
        self.strategy_open_leaves: dict[tuple[str, str, str, Side], Decimal] = defaultdict(Decimal)
        self.open_count: dict[str, int] = defaultdict(int)
        self.strategy_open_count: dict[tuple[str, str], int] = defaultdict(int)

    def add_fill(self, account: str, strategy: str, symbol: str, signed_qty: Decimal) -> None:
        self.net[(account, symbol)] += signed_qty
        self.strategy_net[(account, strategy, symbol)] += signed_qty

    def add_open(self, account: str, strategy: str, symbol: str, side: Side, leaves: Decimal, count: int) -> None:
        """Add (or with negative values remove) an open order's unfilled quantity and count."""
        self.open_leaves[(account, symbol, side)] += leaves
        self.strategy_open_leaves[(account, strategy, symbol, side)] += leaves
        self.open_count[account] += count
        self.strategy_open_count[(account, strategy)] += count

    def forget(self, accounts: set[str]) -> None:
        """Drop everything of ``accounts`` (their partition moved to another router)."""
        tables = (self.net, self.strategy_net, self.open_leaves, self.strategy_open_leaves, self.strategy_open_count)
        for table in tables:
            for key in [k for k in table if k[0] in accounts]:
                del table[key]
        for account in accounts:
            self.open_count.pop(account, None)

    def strategies_on(self, account: str, symbol: str) -> Iterable[tuple[str, Decimal]]:
        for (acc, strat, sym), qty in self.strategy_net.items():
            if acc == account and sym == symbol:
                yield strat, qty


_SEVERITY: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass
class TradingStates:
    """ACTIVE / REDUCING / HALTED at global, account and strategy level; the most restrictive one applies."""

    global_state: TradingState = TradingState.ACTIVE
    accounts: dict[str, TradingState] = field(default_factory=dict)
    strategies: dict[tuple[str, str], TradingState] = field(default_factory=dict)  # (account, strategy)

    def effective(self, account: str, strategy: str) -> tuple[TradingState, str]:
        candidates = [
            (self.global_state, "global"),
            (self.accounts.get(account, TradingState.ACTIVE), f"account {account}"),
            (self.strategies.get((account, strategy), TradingState.ACTIVE), f"strategy {strategy}"),
        ]
        return max(candidates, key=lambda c: _SEVERITY[c[0]])

    def set(self, state: TradingState, account: str | None, strategy: str | None) -> None:
        if strategy is not None:
            if account is None:
                raise ValueError("a strategy's trading state needs its account")
            self.strategies[(account, strategy)] = state
        elif account is not None:
            self.accounts[account] = state
        else:
            self.global_state = state


@dataclass
class RiskView:
    """What the rules may read."""

    limits: Callable[[str], RiskLimits]
    instrument: Callable[[str, str], Instrument | None]  # (broker_id, symbol)
    tick_size: Callable[[str, str], Decimal | None]
    quote: Callable[[str, str], Quote | None]  # (broker_id, symbol)
    account_state: Callable[[str], AccountState | None]
    margin_per_lot: Callable[[str, str, str, Decimal | None], Decimal | None]  # (account, broker, symbol, price)
    to_account_ccy: Callable[[str, str, Decimal], Decimal | None]  # (account, symbol, quote-ccy amount)
    day_start_equity: Callable[[str], Decimal | None]
    exposure: Exposure = field(default_factory=Exposure)
    trading: TradingStates = field(default_factory=TradingStates)
    buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    now_ns: Callable[[], int] = time.time_ns

    def bucket(self, kind: str, key: str, rate: Rate) -> TokenBucket:
        b = self.buckets.get((kind, key))
        if b is None:
            b = self.buckets[(kind, key)] = TokenBucket(rate, self.clock())
        return b


# ----------------------------------------------------------------------------------------- rules


def signed(order: OrderToCheck) -> Decimal:
    return order.quantity * order.side.sign


def reduces(net: Decimal, order: OrderToCheck) -> bool:
    """True when the order only shrinks |net|: it never increases it and never flips it."""
    if net == 0:
        return False
    after = net + signed(order)
    return after == 0 or ((after > 0) == (net > 0) and abs(after) < abs(net))


def reference_price(order: OrderToCheck, view: RiskView) -> Decimal | None:
    if order.limit_price is not None:
        return order.limit_price
    if order.stop_price is not None:
        return order.stop_price
    q = view.quote(order.broker_id, order.symbol)
    if q is None:
        return None
    return q.ask if order.side is Side.BUY else q.bid


class Rule:
    category: RejectCategory = RejectCategory.RISK
    name: str = "rule"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        raise NotImplementedError


class TradingStateRule(Rule):
    category = RejectCategory.TRADING_STATE
    name = "trading_state"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        state, where = view.trading.effective(order.account, order.strategy_id)
        if state is TradingState.HALTED:
            return f"trading is HALTED ({where})"
        if (
            state is TradingState.REDUCING
            and not closes_ticket(order)
            and not reduces(view.exposure.net[(order.account, order.symbol)], order)
        ):
            return f"trading is REDUCING ({where}): only orders that reduce the {order.symbol} position pass"
        return None


class InstrumentRule(Rule):
    category = RejectCategory.INSTRUMENT
    name = "instrument"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        if view.instrument(order.broker_id, order.symbol) is None:
            return f"{order.symbol} is not a known tradable instrument at {order.broker_id}"
        return None


class QuantityRule(Rule):
    name = "quantity"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        spec = view.instrument(order.broker_id, order.symbol)
        if spec is None:
            return None
        q = order.quantity
        if q < spec.min_lot:
            return f"quantity {q} is below the minimum {spec.min_lot} for {order.symbol}"
        if q > spec.max_lot:
            return f"quantity {q} is above the maximum {spec.max_lot} for {order.symbol}"
        if q % spec.lot_step:
            return f"quantity {q} is not a multiple of the lot step {spec.lot_step} for {order.symbol}"
        return None


class MinNotionalRule(Rule):
    """The venue's smallest order value (Binance NOTIONAL / MIN_NOTIONAL, reported to ``om_instruments``): refused
    here with a reason instead of by the venue. Valued in the quote currency at the limit or stop price, else the
    touch; without a price it is left to the venue. Reduce-only orders are exempt (Binance futures exempts them;
    a close must never be stopped by a floor)."""

    name = "min_notional"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        spec = view.instrument(order.broker_id, order.symbol)
        if spec is None or spec.min_notional is None or order.reduce_only:
            return None
        price = reference_price(order, view)
        if price is None:
            return None
        notional = order.quantity * spec.contract_size * price
        if notional < spec.min_notional:
            return f"order value {notional:f} is below the venue's minimum {spec.min_notional:f} for {order.symbol}"
        return None


class TickRule(Rule):
    name = "tick"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        tick = view.tick_size(order.broker_id, order.symbol)
        if tick is None:
            return None
        for label, price in (("limit price", order.limit_price), ("stop price", order.stop_price)):
            if price is not None and price % tick:
                return f"{label} {price} is not on the tick {tick} for {order.symbol}"
        return None


class ExpiryRule(Rule):
    category = RejectCategory.EXPIRED
    name = "gtd_expiry"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        gtd = order.time_in_force is TimeInForce.GTD and order.expire_at_ns is not None
        if gtd and order.expire_at_ns <= view.now_ns():  # type: ignore[operator]
            return "the GTD expiry time has already passed"
        return None


class NotionalRule(Rule):
    name = "notional"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        limits = view.limits(order.account)
        sym = match(limits.symbols, order.symbol)
        caps = [(limits.max_order_notional, "account"), (sym.max_order_notional if sym else None, order.symbol)]
        if all(cap is None for cap, _ in caps):
            return None
        spec = view.instrument(order.broker_id, order.symbol)
        price = reference_price(order, view)
        if spec is None or price is None:
            return f"no price for {order.symbol} to check the order's notional against its limit"
        notional = view.to_account_ccy(order.account, order.symbol, order.quantity * spec.contract_size * price)
        if notional is None:
            return f"no conversion rate to value {order.symbol} in the account currency"
        for cap, where in caps:
            if cap is not None and notional > cap:
                return f"order notional {notional:.2f} exceeds the {where} limit {cap}"
        return None


class GrossExposureRule(Rule):
    """An account-level cap on gross exposure in the account currency, across every symbol and strategy together:
    per symbol the worst case of the account's position after its open orders on either side fill, valued at the
    mid, summed. An order that does not add to that total passes, even above the cap (closing is always allowed)."""

    name = "gross_exposure"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        cap = view.limits(order.account).max_gross_notional
        if cap is None:
            return None
        ex, acc = view.exposure, order.account
        symbols = {s for (a, s), q in ex.net.items() if a == acc and q}
        symbols |= {s for (a, s, _), q in ex.open_leaves.items() if a == acc and q}
        symbols.add(order.symbol)
        before = after = ZERO
        for sym in sorted(symbols):
            net = ex.net.get((acc, sym), ZERO)
            buy = ex.open_leaves.get((acc, sym, Side.BUY), ZERO)
            sell = ex.open_leaves.get((acc, sym, Side.SELL), ZERO)
            worst_before = max(abs(net + buy), abs(net - sell))
            if sym == order.symbol:
                buy, sell = (buy + order.quantity, sell) if order.side is Side.BUY else (buy, sell + order.quantity)
            worst_after = max(abs(net + buy), abs(net - sell))
            if worst_before == 0 and worst_after == 0:
                continue
            spec = view.instrument(order.broker_id, sym)
            quote = view.quote(order.broker_id, sym)
            if spec is None or quote is None:
                return f"no price for {sym} to value the account's gross exposure"
            mid = (quote.bid + quote.ask) / 2
            values = [view.to_account_ccy(acc, sym, q * spec.contract_size * mid) for q in (worst_before, worst_after)]
            if values[0] is None or values[1] is None:
                return f"no conversion rate to value {sym} in the account currency"
            before += values[0]
            after += values[1]
        if after > cap and after > before:
            return f"gross exposure would reach {after:.2f} in the account currency, above the account limit {cap}"
        return None


class PositionRule(Rule):
    """Worst case after the order: the position plus every open order on the same side, plus this one."""

    name = "position"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        limits = view.limits(order.account)
        ex = view.exposure
        acc, strat, sym, side = order.account, order.strategy_id, order.symbol, order.side
        account_limits = match(limits.symbols, sym)
        if account_limits is not None:
            net = ex.net[(acc, sym)] + side.sign * ex.open_leaves[(acc, sym, side)] + signed(order)
            if account_limits.max_net_position is not None and abs(net) > account_limits.max_net_position:
                return f"net {sym} position would reach {net}, above the limit {account_limits.max_net_position}"
            if account_limits.max_gross_position is not None:
                gross = sum((abs(q) for s, q in ex.strategies_on(acc, sym) if s != strat), ZERO)
                mine = ex.strategy_net[(acc, strat, sym)]
                mine += side.sign * ex.strategy_open_leaves[(acc, strat, sym, side)] + signed(order)
                gross += abs(mine)
                if gross > account_limits.max_gross_position:
                    return (
                        f"gross {sym} position would reach {gross}, above the limit {account_limits.max_gross_position}"
                    )
        strategy_limits = match(limits.strategies, strat)
        if strategy_limits is not None:
            mine = ex.strategy_net[(acc, strat, sym)]
            worst = mine + side.sign * ex.strategy_open_leaves[(acc, strat, sym, side)] + signed(order)
            cap = strategy_limits.max_net_position
            if cap is not None and abs(worst) > cap:
                return f"strategy {strat} {sym} position would reach {worst}, above its limit {cap}"
            cap = strategy_limits.max_gross_position
            gross = abs(mine) + ex.strategy_open_leaves[(acc, strat, sym, Side.BUY)]
            gross += ex.strategy_open_leaves[(acc, strat, sym, Side.SELL)] + order.quantity
            if cap is not None and gross > cap:
                return f"strategy {strat} {sym} gross exposure would reach {gross}, above its limit {cap}"
        return None


class OpenOrdersRule(Rule):
    name = "open_orders"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        limits = view.limits(order.account)
        ex = view.exposure
        n = ex.open_count[order.account]
        if limits.max_open_orders is not None and n >= limits.max_open_orders:
            return f"account {order.account} has {n} open orders (limit {limits.max_open_orders})"
        cap = limits.max_open_orders_per_strategy
        n = ex.strategy_open_count[(order.account, order.strategy_id)]
        if cap is not None and n >= cap:
            return f"strategy {order.strategy_id} has {n} open orders (limit {cap})"
        return None


class RateRule(Rule):
    """Token buckets on order submits (per strategy and per broker); takes a token only when the order passes
    every rule, so a denied order does not use up the rate."""

    name = "submit_rate"

    def buckets(self, order: OrderToCheck, view: RiskView) -> list[tuple[str, TokenBucket, Rate]]:
        limits = view.limits(order.account)
        out = []
        if limits.submit_rate_per_strategy is not None:
            rate = limits.submit_rate_per_strategy
            out.append((f"strategy {order.strategy_id}", view.bucket("submit_s", order.strategy_id, rate), rate))
        if limits.submit_rate_per_broker is not None:
            rate = limits.submit_rate_per_broker
            out.append((f"broker {order.broker_id}", view.bucket("submit_b", order.broker_id, rate), rate))
        return out

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        now = view.clock()
        for who, bucket, rate in self.buckets(order, view):
            if bucket.available(now) < 1:
                return f"submit rate of {who} above {rate.per_second:g}/s (burst {rate.burst})"
        return None

    def commit(self, order: OrderToCheck, view: RiskView) -> None:
        now = view.clock()
        for _, bucket, _ in self.buckets(order, view):
            bucket.take(now)


class CollarRule(Rule):
    name = "price_collar"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        collar = view.limits(order.account).price_collar
        if collar is None or order.limit_price is None:
            return None
        q = view.quote(order.broker_id, order.symbol)
        if q is None:
            return f"no quote for {order.symbol} to check the limit price against"
        mid = (q.bid + q.ask) / 2
        low, high = mid * (1 - collar), mid * (1 + collar)
        if not low <= order.limit_price <= high:
            return (
                f"limit price {order.limit_price} is outside the collar {low.normalize()}..{high.normalize()} "
                f"(mid {mid} ±{(collar * 100).normalize()}%)"
            )
        return None


class MarginRule(Rule):
    category = RejectCategory.INSUFFICIENT_FUNDS
    name = "margin"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        if not view.limits(order.account).check_margin:
            return None
        net = view.exposure.net[(order.account, order.symbol)]
        if reduces(net, order):
            return None  # releases margin
        state = view.account_state(order.account)
        if state is None:
            return None  # no books yet: the broker's own margin check still applies
        per_lot = view.margin_per_lot(order.account, order.broker_id, order.symbol, reference_price(order, view))
        if per_lot is None:
            return None
        need = per_lot * order.quantity
        if need > state.free_margin:
            return f"order needs margin {need:.2f}, free margin is {state.free_margin:.2f}"
        return None


class ReduceOnlyRule(Rule):
    name = "reduce_only"

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        if not order.reduce_only or closes_ticket(order):
            return None  # a ticket close may move the net either way (long 1 + short 1: closing the long sells)
        net = view.exposure.net[(order.account, order.symbol)]
        if not reduces(net, order):
            return (
                f"reduce-only {order.side.value} {order.quantity} would increase or flip the "
                f"{order.symbol} position {net}"
            )
        return None


class DailyLossRule(Rule):
    """Denies, and asks the engine to halt the account, once the day's loss reaches the limit."""

    name = "daily_loss"

    def loss(self, account: str, view: RiskView) -> tuple[Decimal, Decimal] | None:
        limit = view.limits(account).daily_loss_limit
        state = view.account_state(account)
        start = view.day_start_equity(account)
        if limit is None or state is None or start is None:
            return None
        return start - state.equity, limit

    def check(self, order: OrderToCheck, view: RiskView) -> str | None:
        found = self.loss(order.account, view)
        if found is not None and found[0] >= found[1]:
            if order.reduce_only and reduces(view.exposure.net.get((order.account, order.symbol), ZERO), order):
                return None  # closing is always allowed (the kill switch flattens a halted day's position)
            return f"daily loss {found[0]:.2f} reached the limit {found[1]}; account {order.account} halted"
        return None


def flatten_plan(holdings: list[tuple[str, str, Decimal]]) -> list[tuple[str, str, Decimal]]:
    """What makes an account flat with reduce-only orders, from ``(strategy, symbol, net)`` holdings: per symbol
    the account's net, split over the strategies holding the net's side (largest first), each part booked to its
    holder (signed like the position it closes). Strategies on the other side keep offsetting positions."""
    by_symbol: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for strategy, symbol, qty in holdings:
        if qty:
            by_symbol[symbol].append((strategy, qty))
    out: list[tuple[str, str, Decimal]] = []
    for symbol, held in sorted(by_symbol.items()):
        net = sum((q for _, q in held), ZERO)
        left = abs(net)
        for strategy, qty in sorted((h for h in held if (h[1] > 0) == (net > 0)), key=lambda h: (-abs(h[1]), h[0])):
            if net == 0 or left <= 0:
                break
            part = min(abs(qty), left)
            out.append((strategy, symbol, part if net > 0 else -part))
            left -= part
    return out


RULES: Final[tuple[Rule, ...]] = (
    TradingStateRule(),
    DailyLossRule(),
    InstrumentRule(),
    QuantityRule(),
    MinNotionalRule(),
    TickRule(),
    ExpiryRule(),
    ReduceOnlyRule(),
    NotionalRule(),
    GrossExposureRule(),
    PositionRule(),
    OpenOrdersRule(),
    CollarRule(),
    MarginRule(),
    RateRule(),  # last: it takes a token only when everything else passed
)


@dataclass(frozen=True, slots=True)
class Denial:
    rule: str
    category: RejectCategory
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.category.value}: {self.detail}"


class RiskEngine:
    def __init__(self, view: RiskView, rules: tuple[Rule, ...] = RULES) -> None:
        self.view = view
        self.rules = rules

    def check_cancel(self, account: str, strategy_id: str, broker_id: str) -> Denial | None:
        """A strategy's cancel request against the cancel-rate buckets (per strategy and per broker); takes a
        token from each when it passes."""
        limits = self.view.limits(account)
        now = self.view.clock()
        buckets = []
        for kind, key, rate in (
            ("cancel_s", f"strategy {strategy_id}", limits.cancel_rate_per_strategy),
            ("cancel_b", f"broker {broker_id}", limits.cancel_rate_per_broker),
        ):
            if rate is None:
                continue
            bucket = self.view.bucket(kind, key, rate)
            if bucket.available(now) < 1:
                return Denial(
                    "cancel_rate",
                    RejectCategory.RISK,
                    f"cancel rate of {key} above {rate.per_second:g}/s (burst {rate.burst})",
                )
            buckets.append(bucket)
        for bucket in buckets:
            bucket.take(now)
        return None

    def check(self, order: OrderToCheck) -> Denial | None:
        for rule in self.rules:
            detail = rule.check(order, self.view)
            if detail is not None:
                if isinstance(rule, DailyLossRule) and not self.view.limits(order.account).kill_on_daily_loss:
                    # (with kill_on_daily_loss the router's kill switch sets the states: REDUCING, flat, HALTED)
                    self.view.trading.set(TradingState.HALTED, order.account, None)
                return Denial(rule.name, rule.category, detail)
        for rule in self.rules:
            if isinstance(rule, RateRule):
                rule.commit(order, self.view)
        return None
