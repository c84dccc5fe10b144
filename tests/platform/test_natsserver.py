"""The nats-server launcher: starts on a free port, answers, stops, and refuses a busy port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordermesh.platform.natsserver import NatsServer, NatsServerError, find_binary, free_port, is_listening, url_answers


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A plain TCP listener that never speaks NATS."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def test_find_binary_is_executable() -> None:
    path = find_binary()
    assert Path(path).name == "nats-server"
    assert os.access(path, os.X_OK)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_start_answers_and_stop_silences(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    assert server.url == f"nats://127.0.0.1:{server.port}"
    assert not url_answers(server.url)
    server.start()
    try:
        assert server.proc is not None and server.proc.poll() is None
        assert url_answers(server.url)
        assert is_listening("127.0.0.1", server.port)
        assert (tmp_path / "nats").is_dir()
        assert (tmp_path / "nats" / "nats-server.log").is_file()
    finally:
        server.stop()
    assert server.proc is None
    assert not url_answers(server.url)
    server.stop()  # a second stop is a no-op


def test_context_manager_and_explicit_port(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "server.log"
    with NatsServer(tmp_path / "store", port=port, log_file=log_file) as server:
        assert server.port == port
        assert url_answers(f"nats://127.0.0.1:{port}")
        assert log_file.is_file()
    assert not url_answers(f"nats://127.0.0.1:{port}")


def test_port_used_by_a_running_nats_server(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "a") as first:
        second = NatsServer(tmp_path / "b", port=first.port)
        with pytest.raises(NatsServerError, match="already in use"):
            second.start()
        assert second.proc is None
        assert url_answers(first.url)  # the first one is untouched


def test_port_used_by_something_else(tmp_path: Path, listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    server = NatsServer(tmp_path / "nats", port=port)
    with pytest.raises(NatsServerError, match="exited"):
        server.start()
    assert not url_answers(server.url)


def test_url_answers_only_for_nats(listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    assert not url_answers(f"nats://127.0.0.1:{port}")  # something listens, but it is not NATS
    assert not url_answers(f"nats://127.0.0.1:{free_port()}")  # nothing listens


@pytest.mark.parametrize(("sync_interval", "always"), [(None, False), ("always", True)])
def test_the_sync_interval_reaches_jetstream(tmp_path: Path, sync_interval: str | None, always: bool) -> None:
    """nats-server's own monitoring endpoint says whether JetStream syncs every write."""
    import json
    import urllib.request

    port = free_port()
    with (
        NatsServer(tmp_path, sync_interval=sync_interval, monitor_port=port),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as resp,
    ):
        config = json.load(resp)["jetstream"]["config"]
    assert bool(config.get("sync_always")) is always
