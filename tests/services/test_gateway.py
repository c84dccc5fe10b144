"""The gateway knows adapters only through ``BrokerClient`` and the capabilities they declare.

A broker type the gateway has never heard of, added as settings + builder in the registry table, is driven like
any other (commands become reports, quotes reach ``om.md``, instrument specs reach KV ``om_instruments``); and
nothing under ``services/`` names a concrete adapter or imports a broker's subpackage.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

import ordermesh.brokers.registry as registry
from ordermesh.brokers.client import BrokerClient, BrokerSettings, Capabilities
from ordermesh.brokers.model import (
    Balance,
    BookLevel,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerPosition,
    OrderBook,
    OrderNotFoundError,
)
from ordermesh.brokers.registry import AdapterType
from ordermesh.contract.codec import EXEC_CODEC, QUOTE_CODEC
from ordermesh.contract.subjects import KV_INSTRUMENTS
from ordermesh.contract.wire import (
    OrderAccepted,
    OrderFilled,
    OrderType,
    PlaceOrder,
    Quote,
    Side,
)
from ordermesh.platform.config import HttpSettings, NatsSettings, OrderMeshConfig
from ordermesh.platform.natsserver import free_port
from ordermesh.sizing.instruments import InstrumentOverride, decode_override, instrument_key
from services.gateway.service import GatewayService

REPO = Path(__file__).resolve().parents[2]
BROKER_PACKAGES = ("paper", "mt5", "binance")


# ------------------------------------------------------------------------------------- a new broker


class EchoSettings(BrokerSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    price: Decimal = Decimal("2.5")


class EchoBroker(BrokerClient):
    """Fills every order at one price; streams that price as a quote; knows one symbol's tick size."""

    capabilities: ClassVar[Capabilities] = Capabilities(streams_quotes=True, reports_instruments=True)

    def __init__(self, broker_id: str, settings: EchoSettings) -> None:
        super().__init__(broker_id)
        self.price = settings.price
        self.orders: dict[str, BrokerOrder] = {}
        self.placed = 0

    async def validate_connection(self) -> bool:
        return True

    async def get_balance(self) -> Balance:
        return Balance(currency="USD", balance=Decimal(1000), equity=Decimal(1000), free_margin=Decimal(1000))

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        if order.client_order_id in self.orders:  # idempotent on the client order id
            return self.orders[order.client_order_id]
        self.placed += 1
        fill = BrokerFill(fill_id=f"d{self.placed}", quantity=order.quantity, price=self.price)
        placed = self.orders[order.client_order_id] = BrokerOrder(
            client_order_id=order.client_order_id,
            broker_order_id=str(self.placed),
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            state=BrokerOrderState.FILLED,
            filled_qty=order.quantity,
            fills=[fill],
        )
        return placed

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        return await self.get_order_status(client_order_id)

    async def modify_order(self, client_order_id: str, **_: Decimal | None) -> BrokerOrder:
        return await self.get_order_status(client_order_id)

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        try:
            return self.orders[client_order_id]
        except KeyError:
            raise OrderNotFoundError(client_order_id) from None

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        return OrderBook(
            symbol=symbol, bids=[BookLevel(self.price, Decimal(1))], asks=[BookLevel(self.price, Decimal(1))], ts_ns=1
        )

    async def get_positions(self) -> list[BrokerPosition]:
        return []

    async def quotes(self) -> AsyncIterator[Quote]:
        while True:
            yield Quote(broker_id=self.broker_id, symbol="ECHO", bid=self.price, ask=self.price)
            await asyncio.sleep(0.05)

    async def instruments(self) -> dict[str, InstrumentOverride]:
        return {"ECHO": InstrumentOverride(tick_size=Decimal("0.5"))}


@pytest.fixture
def echo_type(monkeypatch: pytest.MonkeyPatch) -> None:
    table = dict(registry.ADAPTER_TYPES)
    table["echo"] = AdapterType(EchoSettings, EchoBroker, "test broker")  # type: ignore[arg-type]
    monkeypatch.setattr(registry, "ADAPTER_TYPES", table)


async def test_a_new_broker_type_is_a_registry_entry_and_the_gateway_drives_it(
    echo_type: None, nats_settings: NatsSettings
) -> None:
    config = OrderMeshConfig(
        nats=nats_settings,
        http=HttpSettings(gateway_base=free_port()),
        brokers={"echo1": {"type": "echo", "price": "3.25"}},
    )
    gw = GatewayService(config, "echo1")
    task = asyncio.ensure_future(gw.run())
    try:
        await asyncio.wait_for(gw.ready.wait(), 15)
        assert isinstance(gw.adapter, EchoBroker)
        quotes: asyncio.Queue[Quote] = asyncio.Queue()
        reports: asyncio.Queue[Any] = asyncio.Queue()

        async def on_quote(msg: Any) -> None:
            await quotes.put(QUOTE_CODEC.decode(msg.data))

        async def on_exec(msg: Any) -> None:
            await reports.put(EXEC_CODEC.decode(msg.data))

        await gw.bus.subscribe(gw.subjects.md("echo1", "ECHO"), on_quote)
        await gw.bus.subscribe(gw.subjects.exec("echo1", "s1"), on_exec)
        quote = await asyncio.wait_for(quotes.get(), 10)
        assert (quote.broker_id, quote.bid, quote.ask) == ("echo1", Decimal("3.25"), Decimal("3.25"))

        kv = await gw.bus.kv(KV_INSTRUMENTS)
        spec = decode_override((await kv.get(instrument_key("echo1", "ECHO"))).value)
        assert spec.tick_size == Decimal("0.5")

        cmd = PlaceOrder(
            command_id="c1",
            client_order_id="o1",
            intent_id="i1",
            strategy_id="s1",
            account="acc",
            broker_id="echo1",
            symbol="ECHO",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal("0.30"),
        )
        await gw.bus.publish(gw.subjects.cmd("echo1"), cmd, msg_id=cmd.command_id)
        first = await asyncio.wait_for(reports.get(), 10)
        second = await asyncio.wait_for(reports.get(), 10)
        assert isinstance(first, OrderAccepted)
        assert isinstance(second, OrderFilled)
        assert (second.client_order_id, second.last_qty, second.last_px) == ("o1", Decimal("0.30"), Decimal("3.25"))
        assert gw.adapter.placed == 1
    finally:
        gw.request_stop()
        await asyncio.wait_for(task, 20)


# ------------------------------------------------------------------------------------ static guard


def _adapter_class_names() -> set[str]:
    """Every adapter and broker-settings class a broker's subpackage defines."""
    names: set[str] = set()
    for pkg in BROKER_PACKAGES:
        for path in (REPO / "shared" / "ordermesh" / "brokers" / pkg).glob("*.py"):
            module = importlib.import_module(f"ordermesh.brokers.{pkg}.{path.stem}")
            for obj in vars(module).values():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BrokerClient | BrokerSettings)
                    and obj.__module__.startswith(f"ordermesh.brokers.{pkg}")
                ):
                    names.add(obj.__name__)
    return names


def test_the_guard_sees_the_adapters() -> None:
    assert {"PaperBroker", "MT5Adapter", "BinanceSpotAdapter", "BinanceFuturesAdapter", "PaperSettings"} <= (
        _adapter_class_names()
    )


def test_services_name_no_adapter_and_import_no_broker_package() -> None:
    classes = _adapter_class_names()
    found: list[str] = []
    for path in sorted((REPO / "services").rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in classes:
                found.append(f"{where}:{node.lineno} uses {node.id}")
            elif isinstance(node, ast.Attribute) and node.attr in classes:
                found.append(f"{where}:{node.lineno} uses {node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["ordermesh", "brokers"] and len(parts) > 2 and parts[2] in BROKER_PACKAGES:
                    found.append(f"{where}:{node.lineno} imports {node.module}")
                found += [f"{where}:{node.lineno} imports {a.name}" for a in node.names if a.name in classes]
    assert found == []
