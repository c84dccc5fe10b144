"""The ``type: binance_spot`` and ``type: binance_usdm`` broker entries: settings and the functions that build the
adapters."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ordermesh.brokers.client import BrokerClient, BrokerSettings


class BinanceSpotSettings(BrokerSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Binance spot through ccxt (docs/architecture.md §17). Keys come from ``${VAR}`` substitution."""

    type: str = "binance_spot"
    api_key: str = ""
    api_secret: str = ""
    #: A Binance-compatible server (e.g. the tests' local one); None = real Binance. Never with ``testnet``.
    base_url: str | None = None
    #: Binance's spot testnet through ccxt's sandbox mode; only when no ``base_url``.
    testnet: bool = False
    #: How long a signed request stays valid at Binance (ms, at most 60000; Binance's default 5000), sent as
    #: ``recvWindow`` on every signed request.
    recv_window: int = 5000
    #: A warning when our clock and Binance's differ by more than this (ms); signed requests use Binance's time.
    clock_offset_warn_ms: int = 1000
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
        for name in ("poll_interval_ms", "heartbeat_interval_ms", "quote_interval_ms", "clock_offset_warn_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 < self.recv_window <= 60000:
            raise ValueError(f"recv_window must be in 1..60000 ms (Binance's maximum), got {self.recv_window}")
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
        clock_offset_warn_ms=settings.clock_offset_warn_ms,
    )


def build_spot(broker_id: str, settings: BinanceSpotSettings) -> BrokerClient:
    from ordermesh.brokers.binance.spot import BinanceSpotAdapter

    return BinanceSpotAdapter(broker_id, **_binance_common(settings))


class BinanceUsdmSettings(BinanceSpotSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Binance USD-M perpetual futures through ccxt's binanceusdm (docs/architecture.md §17)."""

    type: str = "binance_usdm"
    #: Leverage per symbol (``BTC/USDT:USDT`` or ``BTCUSDT``), set on connect; margin_type applies to these symbols.
    leverage: dict[str, int] = msgspec.field(default_factory=dict)
    margin_type: Literal["cross", "isolated"] | None = None  # None leaves the account's setting
    hedge_mode: bool | None = False  # False: one-way positions (positionSide BOTH); None leaves it as it is


def build_usdm(broker_id: str, settings: BinanceUsdmSettings) -> BrokerClient:
    from ordermesh.brokers.binance.futures import BinanceFuturesAdapter

    return BinanceFuturesAdapter(
        broker_id,
        **_binance_common(settings),
        leverage=settings.leverage,
        margin_type=settings.margin_type,
        hedge_mode=settings.hedge_mode,
    )
