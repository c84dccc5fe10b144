"""What the console knows: a read model fed with decoded bus messages, and the JSON document the page shows.

No I/O here: ``services.console.service`` feeds it from the bus (and the tests feed it directly). Numbers go to the
page as strings formatted like the command line's (prices and quantities at the instrument's precision, money at
two decimals), so the browser never rounds a Decimal; the equity curve goes as floats, for the chart.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ordermesh.contract.wire import (
    AccountState,
    EquityPoint,
    Heartbeat,
    IntentRejected,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    Position,
    Side,
)
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.routing.orders import OrderRecord
from services.cli.display import Display, money

STATES = ("ACTIVE", "REDUCING", "HALTED")
_RANK = {state: i for i, state in enumerate(STATES)}
ZERO = Decimal(0)

#: A heartbeat older than this marks its process stale; older than ``GONE_S`` it is dropped from the list.
STALE_S = 3.0
GONE_S = 300.0


# ------------------------------------------------------------------------------------ trading state


@dataclass
class TradingStates:
    """The router's trading states, parsed from its answer to a ``TradingStateQuery`` (``ControlReply.detail``:
    ``global ACTIVE; account paper-1 HALTED; strategy paper-1/demo-trend REDUCING``; scopes not named are ACTIVE)."""

    global_state: str = "ACTIVE"
    accounts: dict[str, str] = field(default_factory=dict)
    strategies: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def parse(cls, detail: str) -> TradingStates:
        out = cls()
        for part in detail.split(";"):
            words = part.strip().split(" ")
            if len(words) < 2 or words[-1] not in _RANK:
                continue
            kind, name, state = words[0], " ".join(words[1:-1]), words[-1]
            if kind == "global":
                out.global_state = state
            elif kind == "account" and name:
                out.accounts[name] = state
            elif kind == "strategy" and "/" in name:
                account, _, strategy = name.partition("/")
                out.strategies[(account, strategy)] = state
        return out

    def of_account(self, account: str) -> tuple[str, str]:
        """The state an account's orders are under (the more restrictive of global and account) and its scope."""
        own = self.accounts.get(account, "ACTIVE")
        if _RANK[self.global_state] >= _RANK[own] and self.global_state != "ACTIVE":
            return self.global_state, "global"
        return own, "account" if own != "ACTIVE" else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "global": self.global_state,
            "accounts": dict(sorted(self.accounts.items())),
            "strategies": [
                {"account": a, "strategy": s, "state": st} for (a, s), st in sorted(self.strategies.items())
            ],
        }


# ------------------------------------------------------------------------------------------ win rates


@dataclass
class _Open:
    qty: Decimal  # signed lots
    avg: Decimal


@dataclass
class TradeStats:
    fills: int = 0
    closes: int = 0  # orders that reduced or closed a position
    wins: int = 0  # of those, the ones whose closing part gained (before commissions)

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.closes if self.closes else None


class WinRates:
    """Win rate per (account, strategy) from the fills, booked as the keeper books them: netting accounts keep each
    strategy's net position per symbol; hedging accounts one position per ticket (a fill naming an open ticket in
    ``position_id`` reduces it, any other opens a ticket named by its ``position_id`` or fill id). An order that
    reduces a position is one trade, won when what its fills realized (price move x closed lots) is positive."""

    def __init__(self, hedging: Iterable[str] = (), remember: int = 10_000) -> None:
        self.hedging = set(hedging)
        self.open: dict[tuple[str, ...], _Open] = {}
        self.stats: dict[tuple[str, str], TradeStats] = {}
        # closing orders still filling: client order id -> (account, strategy), realized so far; the latest only
        self._closing: collections.OrderedDict[str, tuple[tuple[str, str], Decimal]] = collections.OrderedDict()
        self._remember = remember
        self._fill_ids: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    def apply(self, f: OrderFilled) -> None:
        fid = (f.broker_id, f.fill_id)
        if fid in self._fill_ids:  # the same fill reported again
            return
        self._fill_ids[fid] = None
        if len(self._fill_ids) > self._remember:
            self._fill_ids.popitem(last=False)
        owner = (f.account, f.strategy_id)
        self.stats.setdefault(owner, TradeStats()).fills += 1
        signed = f.last_qty if f.side is Side.BUY else -f.last_qty
        if f.account in self.hedging:
            ticket = (f.account, "#ticket", f.position_id or "")
            if not f.position_id or ticket not in self.open:
                self.open[(f.account, "#ticket", f.position_id or f.fill_id)] = _Open(signed, f.last_px)
                return
            key: tuple[str, ...] = ticket
        else:
            key = (f.account, f.strategy_id, f.symbol)
        realized = self._book(key, signed, f.last_px)
        if realized is not None:
            self._closed(f.client_order_id, owner, realized)

    def _book(self, key: tuple[str, ...], signed: Decimal, px: Decimal) -> Decimal | None:
        """Apply a fill to a position; what it realized (None: it only opened or added)."""
        pos = self.open.get(key)
        if pos is None or pos.qty == 0:
            self.open[key] = _Open(signed, px)
            return None
        if (pos.qty > 0) == (signed > 0):
            total = pos.qty + signed
            pos.avg = (pos.avg * abs(pos.qty) + px * abs(signed)) / abs(total)
            pos.qty = total
            return None
        closed = min(abs(pos.qty), abs(signed))
        realized = (px - pos.avg) * closed * (1 if pos.qty > 0 else -1)
        rest = pos.qty + signed
        if rest == 0:
            del self.open[key]
        elif (rest > 0) == (pos.qty > 0):
            pos.qty = rest
        else:  # flipped: the rest opens at the fill price
            self.open[key] = _Open(rest, px)
        return realized

    def _closed(self, coid: str, owner: tuple[str, str], realized: Decimal) -> None:
        stats = self.stats[owner]
        before = self._closing.pop(coid, None)
        if before is None:
            stats.closes += 1
            total = realized
        else:
            total = before[1] + realized
            if before[1] > 0:
                stats.wins -= 1
        if total > 0:
            stats.wins += 1
        self._closing[coid] = (owner, total)
        if len(self._closing) > self._remember:
            self._closing.popitem(last=False)


# -------------------------------------------------------------------------------------------- latency

#: The hops the console can see from the bus: (key, label, who is in it).
HOPS = (
    ("intent_to_order", "intent → order", "sizer"),
    ("order_to_accepted", "order → accepted", "router, gateway, broker"),
    ("intent_to_fill", "intent → first fill", "end to end"),
)


class Latencies:
    """Hop latencies over the last ``window_s`` seconds, from the messages' own timestamps (``ts_ns`` of the
    ``OrderRequest``, of its intent, of the ``OrderAccepted`` and the ``OrderFilled``; one machine's clock in
    ``ordermesh up``, several hosts' clocks otherwise)."""

    def __init__(self, window_s: float = 60.0, keep: int = 5000, clock: Callable[[], int] = time.time_ns) -> None:
        self.window_ns = int(window_s * 1e9)
        self.samples: dict[str, collections.deque[tuple[int, float]]] = {
            hop: collections.deque(maxlen=keep) for hop, _, _ in HOPS
        }
        self._orders: collections.OrderedDict[str, int] = collections.OrderedDict()  # intent id -> order ts_ns
        self._clock = clock

    def add(self, hop: str, at_ns: int, seconds: float) -> None:
        if seconds >= 0 and self._clock() - at_ns <= self.window_ns:
            self.samples[hop].append((at_ns, seconds))

    def on_order(self, req: OrderRequest) -> None:
        self.add("intent_to_order", req.ts_ns, (req.ts_ns - req.intent.ts_ns) / 1e9)
        self._orders[req.intent.intent_id] = req.ts_ns
        if len(self._orders) > 10_000:
            self._orders.popitem(last=False)

    def on_accepted(self, ev: OrderAccepted) -> None:
        at = self._orders.pop(ev.intent_id, None)
        if at is not None:
            self.add("order_to_accepted", ev.ts_ns, (ev.ts_ns - at) / 1e9)

    def on_fill(self, ev: OrderFilled) -> None:
        if ev.cum_qty == ev.last_qty and ev.intent_ts_ns:  # the order's first fill
            self.add("intent_to_fill", ev.ts_ns, (ev.ts_ns - ev.intent_ts_ns) / 1e9)

    def summary(self) -> list[dict[str, Any]]:
        since = self._clock() - self.window_ns
        rows = []
        for hop, label, who in HOPS:
            values = sorted(s for at, s in self.samples[hop] if at >= since)
            row: dict[str, Any] = {"hop": hop, "label": label, "who": who, "count": len(values)}
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                row[name] = _ms(values[min(len(values) - 1, int(q * len(values)))]) if values else "-"
            row["max"] = _ms(values[-1]) if values else "-"
            rows.append(row)
        return rows


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


# ------------------------------------------------------------------------------------------ the model


class ConsoleState:
    """Everything the page shows, kept current by the service's subscriptions and queries."""

    def __init__(
        self,
        config: OrderMeshConfig,
        *,
        keep_fills: int = 20,
        keep_refusals: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.display = Display(config)
        self.quote_ccy = _quote_currencies(config)
        self.hedging = {a for a, s in config.accounts.items() if s.mode == "hedging"}
        self.clock = clock
        self.wins = WinRates(self.hedging)
        self.latency = Latencies(clock=lambda: int(self.clock() * 1e9))
        self.fills: collections.deque[OrderFilled] = collections.deque(maxlen=keep_fills)
        self.refusals: collections.deque[IntentRejected | OrderDenied | OrderRejected] = collections.deque(
            maxlen=keep_refusals
        )
        self.orders: dict[str, OrderRecord] = {}  # open ones, by client order id
        self.orders_loaded = False
        self.account_states: dict[str, AccountState] = {}
        self.positions: list[Position] = []
        self.keeper: dict[str, Any] = {"ok": False, "detail": "not asked yet"}
        self.trading: TradingStates | None = None
        self.trading_error = "not asked yet"
        self.heartbeats: dict[str, tuple[float, Heartbeat]] = {}
        self.equity: dict[str, collections.deque[tuple[float, float, float]]] = {}
        self._equity_new: dict[str, list[tuple[float, float, float]]] = {}
        self.equity_keep = max(10, config.console.equity_points)
        self.counts = {"intents": 0, "orders": 0, "fills": 0, "refusals": 0}
        self.intent_times: collections.deque[float] = collections.deque(maxlen=5000)
        self.actions: collections.deque[dict[str, Any]] = collections.deque(maxlen=30)
        self.exec_seq = 0
        self.exec_head = 0  # the exec stream's last sequence when the console started reading
        self.started = clock()
        self.bus: dict[str, Any] = {"observer": False, "operator": False, "operator_detail": "not connected yet"}

    # ---------------------------------------------------------------------------------- feeding

    def on_intent(self) -> None:
        self.counts["intents"] += 1
        self.intent_times.append(self.clock())

    def on_order(self, req: OrderRequest) -> None:
        self.counts["orders"] += 1
        self.latency.on_order(req)

    def on_report(self, m: Any, seq: int = 0) -> None:
        """A message of the exec stream (``om.exec.>`` or ``om.reject.>``), in stream order per subject filter.
        Kept as it came; formatted only when shown (a replay of the whole stream formats nothing)."""
        self.exec_seq = max(self.exec_seq, seq)
        if isinstance(m, OrderFilled):
            self.counts["fills"] += 1
            self.wins.apply(m)
            self.latency.on_fill(m)
            self.fills.appendleft(m)
        elif isinstance(m, OrderAccepted):
            self.latency.on_accepted(m)
        elif isinstance(m, IntentRejected | OrderDenied | OrderRejected):
            self.counts["refusals"] += 1
            self.refusals.appendleft(m)

    def _fill(self, m: OrderFilled) -> dict[str, Any]:
        d = self.display
        commission = "" if not m.commission else f"{m.commission.normalize():f} {m.commission_asset or ''}".strip()
        return {
            "t": m.ts_ns // 1_000_000,
            "intent_id": m.intent_id,
            "client_order_id": m.client_order_id,
            "account": m.account,
            "strategy": m.strategy_id,
            "symbol": m.symbol,
            "side": m.side.value,
            "qty": d.qty(m.symbol, m.last_qty),
            "px": d.price(m.symbol, m.last_px),
            "broker": m.broker_id,
            "liquidity": m.liquidity.value,
            "commission": commission,
        }

    @staticmethod
    def _refusal(m: IntentRejected | OrderDenied | OrderRejected) -> dict[str, Any]:
        return {
            "t": m.ts_ns // 1_000_000,
            "kind": type(m).__name__,
            "by": {IntentRejected: "sizer", OrderDenied: "router", OrderRejected: "broker"}[type(m)],
            "intent_id": m.intent_id,
            "account": m.account,
            "strategy": m.strategy_id,
            "symbol": m.symbol,
            "category": m.category.value,
            "reason": m.reason,
        }

    def on_order_record(self, key: str, rec: OrderRecord | None) -> None:
        if rec is None or not rec.is_open:
            self.orders.pop(key, None)
        else:
            self.orders[key] = rec

    def on_heartbeat(self, hb: Heartbeat) -> None:
        self.heartbeats[f"{hb.service}/{hb.instance}"] = (self.clock(), hb)

    def on_equity(self, p: EquityPoint) -> None:
        point = (p.ts_ns / 1e9, float(p.equity), float(p.balance))
        series = self.equity.setdefault(p.account, collections.deque(maxlen=self.equity_keep))
        if series and point[0] < series[-1][0]:
            return  # older than what is shown (a replica's late point)
        series.append(point)
        self._equity_new.setdefault(p.account, []).append(point)

    def set_positions(self, positions: list[Position], applied_seq: int, fills: int) -> None:
        self.positions = positions
        self.keeper = {"ok": True, "applied_seq": applied_seq, "fills": fills, "detail": ""}

    def keeper_failed(self, detail: str) -> None:
        self.keeper = {**self.keeper, "ok": False, "detail": detail}

    def set_trading(self, detail: str | None, error: str = "") -> None:
        if detail is not None:
            self.trading = TradingStates.parse(detail)
        self.trading_error = error

    def record_action(self, who: str, action: str, scope: str, ok: bool, detail: str) -> dict[str, Any]:
        entry = {
            "t": int(self.clock() * 1000),
            "who": who,
            "action": action,
            "scope": scope,
            "ok": ok,
            "detail": detail,
        }
        self.actions.appendleft(entry)
        return entry

    # --------------------------------------------------------------------------------- showing

    def take_new_equity(self) -> dict[str, list[tuple[float, float, float]]]:
        new, self._equity_new = self._equity_new, {}
        return new

    def equity_series(self, most: int = 2000) -> dict[str, list[tuple[float, float, float]]]:
        """Every account's kept points, thinned to at most about ``most`` (the latest point always in)."""
        out = {}
        for account, series in self.equity.items():
            points = list(series)
            if len(points) > most:
                step = len(points) / most
                points = [points[int(i * step)] for i in range(most)] + [points[-1]]
            out[account] = points
        return out

    def accounts(self) -> list[str]:
        names = set(self.config.accounts) | set(self.account_states)
        names |= {p.account for p in self.positions}
        return sorted(names)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "now": int(now * 1000),
            "bus": self.bus,
            "trading": self._trading(),
            "accounts": [self._account(a) for a in self.accounts()],
            "positions": self._positions(),
            "strategies": self._strategies(),
            "orders": self._orders(now),
            "fills": [self._fill(m) for m in self.fills],
            "refusals": [self._refusal(m) for m in self.refusals],
            "processes": self._processes(now),
            "brokers": self._brokers(now),
            "latency": self.latency.summary(),
            "counts": {
                **self.counts,
                "intents_per_s": round(sum(1 for t in self.intent_times if now - t <= 10) / 10, 1),
            },
            "keeper": self.keeper,
            "exec": {"seq": self.exec_seq, "head": self.exec_head, "caught_up": self.exec_seq >= self.exec_head},
            "actions": list(self.actions),
            "orders_loaded": self.orders_loaded,
        }

    def _trading(self) -> dict[str, Any]:
        if self.trading is None:
            return {"known": False, "global": "UNKNOWN", "accounts": {}, "strategies": [], "error": self.trading_error}
        return {"known": True, **self.trading.to_json(), "error": self.trading_error}

    def _account(self, name: str) -> dict[str, Any]:
        s = self.account_states.get(name)
        if self.trading is None:
            trading, scope = "UNKNOWN", ""
        else:
            trading, scope = self.trading.of_account(name)
        row: dict[str, Any] = {"account": name, "trading": trading, "trading_scope": scope}
        if s is None:
            return {**row, "known": False}
        ratio = f"{s.margin_used / s.equity * 100:.1f} %" if s.equity > 0 else ("-" if not s.margin_used else "inf")
        return {
            **row,
            "known": True,
            "currency": s.currency,
            "mode": s.mode,
            "deposit": str(money(s.deposit)),
            "balance": str(money(s.balance)),
            "equity": str(money(s.equity)),
            "realized": str(money(s.realized_pnl)),
            "unrealized": str(money(s.unrealized_pnl)),
            "pnl": str(money(s.equity - s.deposit)) if s.deposit else str(money(s.realized_pnl + s.unrealized_pnl)),
            "commission": str(money(s.commission)),
            "swap": str(money(s.swap)),
            "margin_used": str(money(s.margin_used)),
            "free_margin": str(money(s.free_margin)),
            "margin_ratio": ratio,
            "fills": s.fills,
            "unpriced": list(s.unpriced),
        }

    def _ccy(self, account: str, symbol: str) -> str:
        return self.quote_ccy.get(symbol) or self._home(account)

    def _home(self, account: str) -> str:
        st = self.account_states.get(account)
        if st is not None:
            return st.currency
        cfg = self.config.accounts.get(account)
        return cfg.currency if cfg is not None else "USD"

    def _positions(self) -> list[dict[str, Any]]:
        d = self.display
        rows = []
        for p in sorted(self.positions, key=lambda p: (p.account, p.strategy_id or "", p.symbol, p.position_id or "")):
            if p.quantity == 0:
                continue
            ccy = self._ccy(p.account, p.symbol)
            rows.append(
                {
                    "account": p.account,
                    "strategy": p.strategy_id or "*",
                    "symbol": p.symbol,
                    "ticket": p.position_id or "",
                    "qty": d.qty(p.symbol, p.quantity),
                    "side": "long" if p.quantity > 0 else "short",
                    "avg_price": d.price(p.symbol, p.avg_price),
                    "mark": d.price(p.symbol, p.mark_price),
                    "unrealized": _with_ccy(p.unrealized_pnl, ccy, self._home(p.account)),
                    "realized": _with_ccy(p.realized_pnl, ccy, self._home(p.account)),
                }
            )
        return rows

    def _strategies(self) -> list[dict[str, Any]]:
        sums: dict[tuple[str, str], dict[str, dict[str, Decimal]]] = {}
        for p in self.positions:
            if p.strategy_id is None:
                continue
            ccy = self._ccy(p.account, p.symbol)
            s = sums.setdefault((p.account, p.strategy_id), {"realized": {}, "unrealized": {}, "fees": {}})
            _add(s["realized"], ccy, p.realized_pnl)
            _add(s["unrealized"], ccy, p.unrealized_pnl)
            _add(s["fees"], ccy, p.commission)
            if p.swap:
                _add(s["fees"], self._home(p.account), p.swap)
        rows = []
        for account, strategy in sorted(set(sums) | set(self.wins.stats)):
            s = sums.get((account, strategy), {"realized": {}, "unrealized": {}, "fees": {}})
            net: dict[str, Decimal] = {}
            for ccy, v in s["realized"].items():
                _add(net, ccy, v)
            for ccy, v in s["unrealized"].items():
                _add(net, ccy, v)
            for ccy, v in s["fees"].items():
                _add(net, ccy, -v)
            stats = self.wins.stats.get((account, strategy), TradeStats())
            home = self._home(account)
            rate = stats.win_rate
            rows.append(
                {
                    "account": account,
                    "strategy": strategy,
                    "realized": _money_by_ccy(s["realized"], home),
                    "unrealized": _money_by_ccy(s["unrealized"], home),
                    "fees": _money_by_ccy(s["fees"], home),
                    "net": _money_by_ccy(net, home),
                    "fills": stats.fills,
                    "trades": stats.closes,
                    "wins": stats.wins,
                    "win_rate": "-" if rate is None else f"{rate * 100:.1f} %",
                }
            )
        return rows

    def _orders(self, now: float) -> list[dict[str, Any]]:
        d = self.display
        rows = []
        for r in sorted(self.orders.values(), key=lambda r: r.updated_ns, reverse=True)[:200]:
            rows.append(
                {
                    "client_order_id": r.client_order_id,
                    "intent_id": r.intent_id,
                    "account": r.account,
                    "strategy": r.strategy_id,
                    "symbol": r.symbol,
                    "side": r.side.value,
                    "qty": d.qty(r.symbol, r.quantity),
                    "filled": d.qty(r.symbol, r.filled_qty),
                    "limit": d.price(r.symbol, r.limit_price) if r.limit_price is not None else "market",
                    "status": r.status.value,
                    "broker": r.broker_id,
                    "age_s": round(max(0.0, now - r.intent_ts_ns / 1e9), 1) if r.intent_ts_ns else None,
                }
            )
        return rows

    def _processes(self, now: float) -> list[dict[str, Any]]:
        for key in [k for k, (seen, _) in self.heartbeats.items() if now - seen > GONE_S]:
            del self.heartbeats[key]
        named: dict[str, list[tuple[str, float, Heartbeat]]] = {}
        for key, (seen, hb) in self.heartbeats.items():
            name = f"{hb.service} {hb.broker_id}" if hb.broker_id else hb.service
            named.setdefault(name, []).append((key, seen, hb))
        rows = []
        for name, entries in sorted(named.items()):
            for _, seen, hb in sorted(entries, key=lambda e: e[2].instance):
                age = now - seen
                if age >= STALE_S:
                    status = "STALE"
                elif not hb.connected:
                    status = "BROKER DOWN"
                else:
                    status = "ok"
                rows.append(
                    {
                        "name": name if len(entries) == 1 else f"{name} ({hb.instance})",
                        "service": hb.service,
                        "instance": hb.instance,
                        "status": status,
                        "age_s": round(age, 1),
                        "uptime_s": max(0, int(now - hb.started_ns / 1e9)),
                        "metrics_url": hb.metrics_url or "",
                    }
                )
        return rows

    def _brokers(self, now: float) -> list[dict[str, Any]]:
        latest: dict[str, tuple[float, Heartbeat]] = {}
        for seen, hb in self.heartbeats.values():
            if hb.broker_id and (hb.broker_id not in latest or seen > latest[hb.broker_id][0]):
                latest[hb.broker_id] = (seen, hb)
        rows = []
        for broker_id, (seen, hb) in sorted(latest.items()):
            age = now - seen
            status = "no heartbeat" if age >= STALE_S else "connected" if hb.connected else "disconnected"
            rows.append(
                {
                    "broker": broker_id,
                    "connected": status == "connected",
                    "status": status,
                    "latency_ms": "-" if hb.broker_latency_ms is None else f"{hb.broker_latency_ms:.1f}",
                    "age_s": round(age, 1),
                }
            )
        return rows


def _quote_currencies(config: OrderMeshConfig) -> dict[str, str]:
    from ordermesh.sizing.instruments import load_instruments

    try:
        specs = load_instruments(config.sizer.instruments_file) if config.sizer.instruments_file else {}
    except Exception:  # the page falls back to the account currency; the services report a bad file themselves
        return {}
    return {symbol: spec.quote_currency for symbol, spec in specs.items()}


def _add(sums: dict[str, Decimal], ccy: str, value: Decimal) -> None:
    sums[ccy] = sums.get(ccy, ZERO) + value


def _with_ccy(value: Decimal, ccy: str, home: str) -> str:
    return str(money(value)) if ccy == home else f"{money(value)} {ccy}"


def _money_by_ccy(sums: dict[str, Decimal], home: str) -> str:
    """``12.34`` in the account currency; ``12.34 + 5.00 JPY`` when PnL is in several quote currencies."""
    if not sums:
        return str(money(ZERO))
    parts = [str(money(sums[home]))] if home in sums else []
    parts += [f"{money(v)} {ccy}" for ccy, v in sorted(sums.items()) if ccy != home]
    return " + ".join(parts)
