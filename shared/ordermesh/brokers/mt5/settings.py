"""The ``type: mt5`` broker entry: an MT5 terminal's connection settings and the function that builds its adapter."""

from __future__ import annotations

import msgspec

from ordermesh.brokers.client import BrokerClient, BrokerSettings


class MT5Settings(BrokerSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
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
    #: The account's margin mode: closes and SL/TP changes go by symbol on a netting account and by ticket on a
    #: hedging one. The stock EA does not say it (ACCOUNT has no margin mode); the gateway refuses to start when
    #: what the account shows contradicts it (see docs/architecture.md §16).
    hedging: bool = False
    #: The trade server's offset from UTC in seconds (its deal, order and tick times); None: detected from ticks.
    server_utc_offset_s: int | None = None
    match_window_s: int = 120  # how long after a 10012/10031 (or a lost reply) its deal may still appear
    settle_s: int = 10  # a lost reply with no deal or order after this long did not execute
    tick_stale_s: int = 30  # no tick for this long while the EA answers: subscribe again
    keep_final_s: int = 3600  # a final order's ticket record is kept this long (and an older unknown command refused)


def build_mt5(broker_id: str, settings: MT5Settings) -> BrokerClient:
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
        hedging=settings.hedging,
        server_utc_offset_s=settings.server_utc_offset_s,
        match_window_s=settings.match_window_s,
        settle_s=settings.settle_s,
        tick_stale_s=settings.tick_stale_s,
        keep_final_s=settings.keep_final_s,
    )
