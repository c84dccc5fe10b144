"""The broker registry: which broker connections exist, how each is configured, and how healthy its gateway is.

Configuration is the ``brokers:`` mapping of the config file, ``{broker_id: {type, enabled, ...}}``. Each entry is
checked on its own: ``${VAR}`` / ``${VAR:-default}`` substituted (an unset variable is named), the ``type``
checked against the known adapter types (listed in the message), the rest validated into that type's settings
Struct. A bad or disabled entry never stops the others. Adapters are created lazily, on first use, by the
gateway that owns the connection. The health cache is fed by gateway heartbeats. Values of secret-looking
fields (keys, secrets, passwords, tokens) never appear in listings or messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec

from ordermesh.brokers.base import BrokerClient
from ordermesh.brokers.paper.commissions import CommissionModel
from ordermesh.brokers.paper.feed import DepthProfile
from ordermesh.brokers.paper.matching import SlippageModel
from ordermesh.contract.wire import Heartbeat
from ordermesh.platform.config import ConfigError, FeedSymbol, _default_symbols, substitute
from ordermesh.platform.log import _SECRET_KEY, MASK


class _Broker(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str
    enabled: bool = True


def _default_depth() -> dict[str, DepthProfile]:
    fx = DepthProfile(levels=5, step_ticks=2, sizes=[Decimal(1), Decimal(2), Decimal(5), Decimal(10), Decimal(20)])
    btc = DepthProfile(
        levels=5, step_ticks=100, sizes=[Decimal("0.5"), Decimal(1), Decimal(2), Decimal(5), Decimal(10)]
    )
    return {"EURUSD": fx, "GBPUSD": fx, "BTCUSD": btc}


def _default_commissions() -> dict[str, CommissionModel]:
    return {
        "BTC*": CommissionModel(maker_bps=Decimal(2), taker_bps=Decimal(5)),
        "*": CommissionModel(per_lot=Decimal("3.50")),
    }


class PaperSettings(_Broker, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The paper venue: books from a seeded synthetic feed (deterministic for a seed) or a replayed CSV file,
    matching, commissions, slippage and margin (docs/architecture.md §7)."""

    type: str = "paper"
    seed: int = 7
    quote_interval_ms: int = 200
    currency: str = "USD"
    deposit: Decimal = Decimal("100000")
    symbols: dict[str, FeedSymbol] = msgspec.field(default_factory=_default_symbols)
    #: Book shape per symbol or fnmatch pattern (a symbol without one: a single level of its ``size``).
    depth: dict[str, DepthProfile] = msgspec.field(default_factory=_default_depth)
    #: Replay books from this CSV file (seq,symbol,bids,asks) instead of the random walk; relative paths are
    #: tried from the working directory, then from the repository root.
    replay_file: str | None = None
    #: Contract sizes, currencies, leverage and margin rates (the sizer's specs); symbols without a spec are
    #: not margined and trade one unit per lot.
    instruments_file: str = "deploy/instruments.yaml"
    #: The account's leverage, replacing every instrument's; None keeps each instrument's own.
    leverage: Decimal | None = None
    #: Commission model per symbol or fnmatch pattern (the exact symbol first, then patterns in order).
    commissions: dict[str, CommissionModel] = msgspec.field(default_factory=_default_commissions)
    #: Extra slippage on taker fills per symbol or pattern (none by default: the book walk and the spread).
    slippage: dict[str, SlippageModel] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdapterType:
    settings: type[_Broker]
    factory: Callable[[str, Any], BrokerClient]
    description: str


def _paper(broker_id: str, settings: PaperSettings) -> BrokerClient:
    from ordermesh.brokers.paper.feed import Feed, ReplayFeed, SyntheticFeed, load_book_csv
    from ordermesh.brokers.paper.venue import PaperBroker
    from ordermesh.sizing.instruments import load_instruments, resolve_path

    feed: Feed
    if settings.replay_file:
        steps = load_book_csv(resolve_path(settings.replay_file), settings.symbols)
        feed = ReplayFeed(broker_id, settings.symbols, steps, settings.depth)
    else:
        feed = SyntheticFeed(broker_id, settings.symbols, settings.seed, settings.depth)
    return PaperBroker(
        broker_id,
        feed,
        currency=settings.currency,
        deposit=settings.deposit,
        instruments=load_instruments(settings.instruments_file),
        leverage=settings.leverage,
        commissions=settings.commissions,
        slippage=settings.slippage,
    )


class MT5Settings(_Broker, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An MT5 terminal running the MQL5-JSON-API expert advisor (or ``ordermesh mt5-sim``)."""

    type: str = "mt5"
    host: str = "127.0.0.1"
    command_port: int = 15555
    data_port: int = 15556
    live_port: int = 15557
    events_port: int = 15558
    single_socket: bool = False  # the variant with one REP socket that answers with the JSON itself
    request_timeout_ms: int = 2000
    heartbeat_interval_ms: int = 1000
    currency: str = "USD"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["EURUSD"])  # ticks subscribed on connect
    match_window_s: int = 120  # reconciliation: how long after sending a lost TRADE its deal may appear


def _mt5(broker_id: str, settings: MT5Settings) -> BrokerClient:
    from ordermesh.brokers.mt5.adapter import MT5Adapter

    return MT5Adapter(
        broker_id,
        host=settings.host,
        command_port=settings.command_port,
        data_port=settings.data_port,
        live_port=settings.live_port,
        events_port=settings.events_port,
        single_socket=settings.single_socket,
        request_timeout_s=settings.request_timeout_ms / 1000,
        heartbeat_interval_s=settings.heartbeat_interval_ms / 1000,
        currency=settings.currency,
        symbols=tuple(settings.symbols),
        match_window_s=settings.match_window_s,
    )


class BinanceSpotSettings(_Broker, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Binance spot through ccxt (docs/architecture.md §17). Keys come from ``${VAR}`` substitution."""

    type: str = "binance_spot"
    api_key: str = ""
    api_secret: str = ""
    #: A Binance-compatible server (e.g. the tests' local one); None = real Binance. Never with ``testnet``.
    base_url: str | None = None
    #: Binance's spot testnet through ccxt's sandbox mode; only when no ``base_url``.
    testnet: bool = False
    recv_window: int = 5000  # ms
    timeout: float = 10.0  # seconds per request
    currency: str = "USDT"  # the quote asset reported as the balance; other assets are positions
    max_backoff_s: float = 30.0  # cap on a Retry-After wait
    poll_interval_ms: int = 1000  # symbols with working orders polled (open orders; trades when they changed)
    #: The markets this gateway trades (``BTC/USDT`` or ``BTCUSDT``): reported to ``om_instruments``, quoted on
    #: ``om.md.<broker>.<symbol>``, and their recent trades read on start and after a reconnection.
    symbols: list[str] = msgspec.field(default_factory=list)
    heartbeat_interval_ms: int = 5000  # server time round trip; 0 = none
    quote_interval_ms: int = 1000  # bookTicker of the symbols; 0 = no quotes
    #: How far back the trades are read when reconciling (Binance serves at most 24 hours per query).
    reconcile_lookback_s: int = 86400
    #: Share of the IP's request-weight limit per minute this process may plan to use (the rest is headroom).
    weight_headroom: float = 0.9

    def __post_init__(self) -> None:
        # Checked here, not when the adapter is made, so `ordermesh brokers validate` reports it.
        if self.base_url and self.testnet:
            raise ValueError("base_url and testnet are exclusive")
        if not 0 < self.reconcile_lookback_s <= 86400:
            raise ValueError(
                f"reconcile_lookback_s must be in 1..86400 (Binance's 24 hours), got {self.reconcile_lookback_s}"
            )
        if not 0 < self.weight_headroom <= 1:
            raise ValueError(f"weight_headroom must be in (0, 1], got {self.weight_headroom}")
        for name in ("poll_interval_ms", "heartbeat_interval_ms", "quote_interval_ms", "recv_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.poll_interval_ms == 0:
            raise ValueError("poll_interval_ms must be positive")


def _binance_common(settings: BinanceSpotSettings) -> dict[str, Any]:
    return dict(
        api_key=settings.api_key,
        api_secret=settings.api_secret,
        base_url=settings.base_url,
        testnet=settings.testnet,
        recv_window_ms=settings.recv_window,
        timeout_s=settings.timeout,
        currency=settings.currency,
        max_backoff_s=settings.max_backoff_s,
        poll_interval_s=settings.poll_interval_ms / 1000,
        symbols=settings.symbols,
        heartbeat_interval_s=settings.heartbeat_interval_ms / 1000,
        quote_interval_s=settings.quote_interval_ms / 1000,
        reconcile_lookback_s=settings.reconcile_lookback_s,
        weight_headroom=settings.weight_headroom,
    )


def _binance_spot(broker_id: str, settings: BinanceSpotSettings) -> BrokerClient:
    from ordermesh.brokers.binance.adapter import BinanceSpotAdapter

    return BinanceSpotAdapter(broker_id, **_binance_common(settings))


class BinanceUsdmSettings(BinanceSpotSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Binance USD-M perpetual futures through ccxt's binanceusdm (docs/architecture.md §17)."""

    type: str = "binance_usdm"
    #: Leverage per symbol (``BTC/USDT:USDT`` or ``BTCUSDT``), set on connect; margin_type applies to these symbols.
    leverage: dict[str, int] = msgspec.field(default_factory=dict)
    margin_type: Literal["cross", "isolated"] | None = None  # None leaves the account's setting
    hedge_mode: bool | None = False  # False: one-way positions (positionSide BOTH); None leaves it as it is


def _binance_usdm(broker_id: str, settings: BinanceUsdmSettings) -> BrokerClient:
    from ordermesh.brokers.binance.adapter import BinanceFuturesAdapter

    return BinanceFuturesAdapter(
        broker_id,
        **_binance_common(settings),
        leverage=settings.leverage,
        margin_type=settings.margin_type,
        hedge_mode=settings.hedge_mode,
    )


#: Adapter types by name. Gateways for other venues register here.
ADAPTER_TYPES: Final[dict[str, AdapterType]] = {
    "paper": AdapterType(PaperSettings, _paper, "simulated venue on a seeded synthetic feed"),
    "mt5": AdapterType(MT5Settings, _mt5, "MetaTrader 5 via the MQL5-JSON-API expert advisor (ZeroMQ)"),
    "binance_spot": AdapterType(BinanceSpotSettings, _binance_spot, "Binance spot through ccxt (REST)"),
    "binance_usdm": AdapterType(BinanceUsdmSettings, _binance_usdm, "Binance USD-M futures through ccxt (REST)"),
}


def default_brokers() -> dict[str, Any]:
    return {"paper": {"type": "paper"}}


@dataclass(frozen=True, slots=True)
class BrokerEntry:
    broker_id: str
    type: str
    enabled: bool
    settings: _Broker | None  # None when the entry is invalid
    error: str | None

    @property
    def usable(self) -> bool:
        return self.enabled and self.settings is not None


@dataclass(slots=True)
class Health:
    connected: bool
    seen_monotonic: float
    instance: str
    latency_ms: float | None = None


def _entry(broker_id: str, raw: Any, env: Mapping[str, str]) -> BrokerEntry:
    where = f"brokers.{broker_id}"
    if not isinstance(raw, dict):
        return BrokerEntry(broker_id, "?", False, None, f"{where}: must be a mapping with at least 'type'")
    kind = raw.get("type")
    enabled = raw.get("enabled", True) not in (False, "false", "False", "no", 0)
    if kind not in ADAPTER_TYPES:
        known = ", ".join(sorted(ADAPTER_TYPES))
        got = "no type" if kind is None else f"unknown type {kind!r}"
        return BrokerEntry(broker_id, str(kind), enabled, None, f"{where}: {got} (known types: {known})")
    try:
        data = substitute(raw, env, f"$.{where}")
        settings = msgspec.convert(data, ADAPTER_TYPES[kind].settings, strict=False)
    except ConfigError as exc:
        return BrokerEntry(broker_id, kind, enabled, None, f"{where}: {exc}")
    except msgspec.ValidationError as exc:
        return BrokerEntry(broker_id, kind, enabled, None, f"{where}: {exc}")
    return BrokerEntry(broker_id, kind, settings.enabled, settings, None)


class BrokerRegistry:
    """Broker entries by id, their lazily created adapters, and the gateways' health."""

    #: A gateway whose last heartbeat is older than this is unhealthy.
    STALE_S: Final = 3.0

    def __init__(self, raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        import os

        self._env = os.environ if env is None else env
        self._entries: dict[str, BrokerEntry] = {}
        self._adapters: dict[str, BrokerClient] = {}
        self.health: dict[str, Health] = {}
        self.started = time.monotonic()
        self.load(raw)

    def load(self, raw: Mapping[str, Any]) -> None:
        """(Re)load the entries; adapters already created for unchanged entries are kept."""
        entries = {bid: _entry(bid, spec, self._env) for bid, spec in sorted(raw.items())}
        for bid in list(self._adapters):
            old, new = self._entries.get(bid), entries.get(bid)
            if new is None or old is None or new.settings != old.settings:
                self._adapters.pop(bid)
        self._entries = entries

    # ------------------------------------------------------------------------------------ entries

    def __contains__(self, broker_id: str) -> bool:
        return broker_id in self._entries

    @property
    def ids(self) -> list[str]:
        return list(self._entries)

    def entry(self, broker_id: str) -> BrokerEntry:
        try:
            return self._entries[broker_id]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise ConfigError(f"brokers.{broker_id}: no such broker in the configuration (known: {known})") from None

    def settings(self, broker_id: str) -> _Broker:
        """The typed settings of a usable broker; ConfigError naming the problem otherwise."""
        e = self.entry(broker_id)
        if e.error:
            raise ConfigError(e.error)
        if not e.enabled:
            raise ConfigError(f"brokers.{broker_id}: disabled")
        assert e.settings is not None
        return e.settings

    def usable(self) -> list[str]:
        return [bid for bid, e in self._entries.items() if e.usable]

    def adapter(self, broker_id: str) -> BrokerClient:
        """The broker's adapter, created on first use."""
        found = self._adapters.get(broker_id)
        if found is None:
            settings = self.settings(broker_id)
            found = self._adapters[broker_id] = ADAPTER_TYPES[settings.type].factory(broker_id, settings)
        return found

    def validate(self) -> list[str]:
        """One line per problem, in broker id order: invalid entries and disabled brokers."""
        lines = []
        for bid, e in self._entries.items():
            if e.error:
                lines.append(f"error: {e.error}")
            elif not e.enabled:
                lines.append(f"warning: brokers.{bid}: disabled (no gateway will run for it)")
        return lines

    def describe(self, broker_id: str) -> dict[str, Any]:
        """A listing row: id, type, state, health and non-secret settings (secrets masked)."""
        e = self._entries[broker_id]
        row: dict[str, Any] = {"broker_id": broker_id, "type": e.type, "enabled": e.enabled}
        row["status"] = "invalid" if e.error else ("disabled" if not e.enabled else "ok")
        h = self.health.get(broker_id)
        row["gateway"] = (
            "never seen"
            if h is None
            else f"{'connected' if h.connected else 'BROKER DOWN'}, {time.monotonic() - h.seen_monotonic:.1f}s ago"
        )
        if e.settings is not None:
            for key, value in msgspec.structs.asdict(e.settings).items():
                if key in ("type", "enabled", "symbols"):
                    continue
                row[key] = MASK if _SECRET_KEY.search(key) and value else value
            if isinstance(e.settings, PaperSettings):
                row["symbols"] = ",".join(sorted(e.settings.symbols))
        return row

    # ------------------------------------------------------------------------------------- health

    def on_heartbeat(self, hb: Heartbeat) -> None:
        if hb.service == "gateway" and hb.broker_id:
            self.health[hb.broker_id] = Health(hb.connected, time.monotonic(), hb.instance, hb.broker_latency_ms)

    def healthy(self, broker_id: str, now: float | None = None) -> bool:
        """A gateway is healthy while it heartbeats and is connected to its broker. Before the first
        heartbeat, a broker counts as healthy during one staleness period after start (no failover on a
        router restart just because heartbeats have not arrived yet)."""
        now = time.monotonic() if now is None else now
        h = self.health.get(broker_id)
        if h is None:
            return now - self.started < self.STALE_S
        return h.connected and now - h.seen_monotonic <= self.STALE_S
