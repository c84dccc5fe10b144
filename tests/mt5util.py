"""Helpers for the MT5 tests: a simulator on free loopback ports and an adapter connected to it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.tickets import TicketStore
from ordermesh.contract.ids import client_order_id
from ordermesh.contract.wire import OrderType, PlaceOrder, Side
from tools.mt5sim.engine import Account
from tools.mt5sim.server import BridgeSimulator, Ports


def free_ports(n: int = 4) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def sim_for(account: Account, ports: Ports, *, single_socket: bool = False) -> BridgeSimulator:
    return BridgeSimulator(account, ports, single_socket=single_socket, tick_interval_ms=20)


def adapter_for(
    ports: Ports,
    *,
    single_socket: bool = False,
    store: TicketStore | None = None,
    timeout: float = 0.5,
    **settings: Any,
) -> MT5Adapter:
    """An adapter on the simulator's ports: fast heartbeats, short settle times (a test waits on events)."""
    kw: dict[str, Any] = {"heartbeat_interval_s": 0.05, "symbols": ("EURUSD",), "settle_s": 1.0, **settings}
    return MT5Adapter(
        "mt5",
        command_port=ports.command,
        data_port=ports.data,
        live_port=ports.live,
        events_port=ports.events,
        single_socket=single_socket,
        request_timeout_s=timeout,
        store=store,
        **kw,
    )


def place(
    n: int | str,
    side: Side = Side.BUY,
    qty: str = "0.10",
    symbol: str = "EURUSD",
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
) -> PlaceOrder:
    coid = client_order_id("mt5-acct", f"intent-{n}")
    return PlaceOrder(
        command_id=f"place:{coid}", client_order_id=coid, intent_id=f"intent-{n}", strategy_id="s1",
        account="mt5-acct", broker_id="mt5", symbol=symbol, side=side, order_type=order_type,
        quantity=Decimal(qty), limit_price=Decimal(limit) if limit else None,
    )  # fmt: skip


def mt5_config(path: Path, ports: Ports, *, broker: str = "", accounts: str = "") -> Path:
    """An ordermesh config that routes everything to one MT5 broker on ``ports`` (``broker``: more lines of its
    entry, ``accounts``: an ``accounts:`` section)."""
    path.write_text(
        "router:\n  default_broker: mt5\n" + accounts + "brokers:\n  mt5:\n    type: mt5\n"
        f"    command_port: {ports.command}\n    data_port: {ports.data}\n    live_port: {ports.live}\n"
        f"    events_port: {ports.events}\n    heartbeat_interval_ms: 200\n" + broker
    )
    return path


@contextlib.contextmanager
def mt5_sim_process(log: Path, ports: Ports, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """``ordermesh mt5-sim`` as its own process on ``ports`` (with ``flags``), stopped on exit."""
    from tests.harness import ROOT

    with open(log, "ab") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "mt5-sim", "--command-port", str(ports.command),
             "--data-port", str(ports.data), "--live-port", str(ports.live), "--events-port", str(ports.events),
             *flags],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        try:
            yield sim
        finally:
            sim.terminate()
            sim.wait(15)
