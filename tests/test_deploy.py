from __future__ import annotations

from pathlib import Path

import msgspec

from ordermesh.brokers.paper.settings import PaperSettings
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.platform.config import OrderMeshConfig, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_shipped_config_states_exactly_the_defaults() -> None:
    # deploy/ordermesh.yaml documents the embedded defaults: it must not drift from them.
    shipped = load_config(DEPLOY / "ordermesh.yaml", env={})
    defaults = OrderMeshConfig()
    assert msgspec.structs.replace(shipped, brokers={}) == msgspec.structs.replace(defaults, brokers={})
    # brokers are raw until the registry checks them: compare what the registry makes of them
    assert BrokerRegistry(shipped.brokers, env={}).settings("paper") == PaperSettings()
    assert BrokerRegistry(defaults.brokers, env={}).settings("paper") == PaperSettings()
    assert list(shipped.brokers) == list(defaults.brokers) == ["paper"]


def test_shipped_config_url_follows_the_environment() -> None:
    cfg = load_config(DEPLOY / "ordermesh.yaml", env={"ORDERMESH_NATS_URL": "nats://10.1.2.3:4222"})
    assert cfg.nats.url == "nats://10.1.2.3:4222"
