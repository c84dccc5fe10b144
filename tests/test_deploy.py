from __future__ import annotations

from pathlib import Path

from ordermesh.config import OrderMeshConfig, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_shipped_config_states_exactly_the_defaults() -> None:
    # deploy/ordermesh.yaml documents the embedded defaults: it must not drift from them.
    assert load_config(DEPLOY / "ordermesh.yaml", env={}) == OrderMeshConfig()


def test_shipped_config_url_follows_the_environment() -> None:
    cfg = load_config(DEPLOY / "ordermesh.yaml", env={"ORDERMESH_NATS_URL": "nats://10.1.2.3:4222"})
    assert cfg.nats.url == "nats://10.1.2.3:4222"
