"""The broker registry: entry-by-entry validation, lazy adapters, health, secrets, reload."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ordermesh.brokers.client import BrokerClient, BrokerSettings
from ordermesh.brokers.paper.settings import PaperSettings
from ordermesh.brokers.paper.venue import PaperBroker
from ordermesh.brokers.registry import ADAPTER_TYPES, AdapterType, BrokerRegistry
from ordermesh.contract.wire import Heartbeat
from ordermesh.platform.config import ConfigError


class KeyedSettings(BrokerSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str = "keyed"
    api_key: str
    api_secret: str
    host: str = "127.0.0.1"


@pytest.fixture
def keyed_type() -> Iterator[None]:
    made: list[str] = []

    def factory(broker_id: str, settings: Any) -> BrokerClient:
        made.append(broker_id)
        return PaperBroker.__new__(PaperBroker)

    ADAPTER_TYPES["keyed"] = AdapterType(KeyedSettings, factory, "test adapter with credentials")
    try:
        yield
    finally:
        del ADAPTER_TYPES["keyed"]


RAW = {
    "paper": {"type": "paper", "seed": "11"},
    "live": {"type": "keyed", "api_key": "${OM_KEY}", "api_secret": "${OM_SECRET}"},
    "nokey": {"type": "keyed", "api_key": "${OM_MISSING}", "api_secret": "x"},
    "fixgw": {"type": "fix"},
    "off": {"type": "paper", "enabled": False},
    "typo": {"type": "paper", "sede": 3},
}
ENV = {"OM_KEY": "k-123", "OM_SECRET": "s-456"}


def test_each_entry_is_checked_on_its_own(keyed_type: None) -> None:
    reg = BrokerRegistry(RAW, env=ENV)
    assert reg.usable() == ["live", "paper"]
    assert reg.validate() == [
        f"error: brokers.fixgw: unknown type 'fix' (known types: {', '.join(sorted(ADAPTER_TYPES))})",
        "error: brokers.nokey: environment variable OM_MISSING is not set (used at $.brokers.nokey.api_key)",
        "warning: brokers.off: disabled (no gateway will run for it)",
        "error: brokers.typo: Object contains unknown field `sede`",
    ]
    settings = reg.settings("paper")
    assert isinstance(settings, PaperSettings) and settings.seed == 11
    with pytest.raises(ConfigError, match=r"brokers\.off: disabled"):
        reg.settings("off")
    with pytest.raises(ConfigError, match=r"brokers.nowhere: no such broker in the configuration \(known: "):
        reg.settings("nowhere")


def test_adapters_are_created_lazily_once_and_kept_across_a_reload(keyed_type: None) -> None:
    reg = BrokerRegistry({"paper": {"type": "paper"}}, env={})
    assert reg._adapters == {}  # nothing made at load
    first = reg.adapter("paper")
    assert isinstance(first, PaperBroker) and first.deposit == Decimal("100000")
    assert reg.adapter("paper") is first
    reg.load({"paper": {"type": "paper"}, "paper2": {"type": "paper", "seed": 3}})
    assert reg.adapter("paper") is first  # unchanged entry: same adapter
    reg.load({"paper": {"type": "paper", "seed": 99}})
    assert reg.adapter("paper") is not first  # changed settings: a new adapter
    assert "paper2" not in reg


def test_listing_masks_secrets(keyed_type: None) -> None:
    row = BrokerRegistry(RAW, env=ENV).describe("live")
    assert row["api_key"] == "***" and row["api_secret"] == "***"
    assert row["host"] == "127.0.0.1" and row["status"] == "ok"
    assert "k-123" not in repr(row) and "s-456" not in repr(row)


def test_health_from_heartbeats() -> None:
    reg = BrokerRegistry({"paper": {"type": "paper"}}, env={})
    t0 = reg.started
    assert reg.healthy("paper", now=t0 + 1)  # grace before the first heartbeat
    assert not reg.healthy("paper", now=t0 + 3.5)
    hb = Heartbeat(service="gateway", instance="g1", started_ns=0, broker_id="paper", connected=True)
    reg.on_heartbeat(hb)
    seen = reg.health["paper"].seen_monotonic
    assert reg.healthy("paper", now=seen + 3.0)
    assert not reg.healthy("paper", now=seen + 3.01)  # stale
    reg.on_heartbeat(Heartbeat(service="gateway", instance="g1", started_ns=0, broker_id="paper", connected=False))
    assert not reg.healthy("paper", now=reg.health["paper"].seen_monotonic)  # gateway up, broker down
    reg.on_heartbeat(Heartbeat(service="sizer", instance="s", started_ns=0))  # not a gateway: ignored
    assert list(reg.health) == ["paper"]


def test_binance_setting_conflicts_are_reported_by_validate_not_at_gateway_start() -> None:
    reg = BrokerRegistry(
        {
            "bs": {"type": "binance_spot", "base_url": "http://127.0.0.1:1", "testnet": True},
            "bf": {"type": "binance_usdm", "margin_type": "crossed"},
        },
        env={},
    )
    problems = reg.validate()
    assert len(problems) == 2
    assert problems[0].startswith("error: brokers.bf: ") and "margin_type" in problems[0]
    assert problems[1] == "error: brokers.bs: base_url and testnet are exclusive"
    assert reg.usable() == []
