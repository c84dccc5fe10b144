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
from typing import Any, Final

import msgspec

from ordermesh.brokers.binance.settings import BinanceSpotSettings, BinanceUsdmSettings, build_spot, build_usdm
from ordermesh.brokers.client import BrokerClient, BrokerSettings
from ordermesh.brokers.mt5.settings import MT5Settings, build_mt5
from ordermesh.brokers.paper.settings import PaperSettings, build_paper
from ordermesh.contract.wire import Heartbeat
from ordermesh.platform.config import ConfigError, substitute
from ordermesh.platform.log import _SECRET_KEY, MASK


@dataclass(frozen=True, slots=True)
class AdapterType:
    settings: type[BrokerSettings]
    factory: Callable[[str, Any], BrokerClient]
    description: str


#: Adapter types by name: a new broker is a subpackage of ``ordermesh.brokers`` (its settings Struct and the
#: function that builds its adapter, which imports the adapter only when one is made) and one entry here.
ADAPTER_TYPES: Final[dict[str, AdapterType]] = {
    "paper": AdapterType(PaperSettings, build_paper, "simulated venue on a seeded synthetic feed"),
    "mt5": AdapterType(MT5Settings, build_mt5, "MetaTrader 5 via the MQL5-JSON-API expert advisor (ZeroMQ)"),
    "binance_spot": AdapterType(BinanceSpotSettings, build_spot, "Binance spot through ccxt (REST)"),
    "binance_usdm": AdapterType(BinanceUsdmSettings, build_usdm, "Binance USD-M futures through ccxt (REST)"),
}


def default_brokers() -> dict[str, Any]:
    return {"paper": {"type": "paper"}}


@dataclass(frozen=True, slots=True)
class BrokerEntry:
    broker_id: str
    type: str
    enabled: bool
    settings: BrokerSettings | None  # None when the entry is invalid
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

    def settings(self, broker_id: str) -> BrokerSettings:
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
        if hb.service == "gateway" and hb.broker_id and hb.detail.get("role") != "standby":
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
