"""Helpers for the MT5 tests: a simulator on free loopback ports and an adapter connected to it."""

from __future__ import annotations

import socket
from decimal import Decimal
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
