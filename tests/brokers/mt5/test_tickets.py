"""The MT5 broker entry in the registry and the ticket map in JetStream KV (a real nats-server)."""

from __future__ import annotations

from decimal import Decimal

from ordermesh.brokers.model import BrokerFill
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.settings import MT5Settings
from ordermesh.brokers.mt5.tickets import KvTicketStore, TicketRecord
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.subjects import KV_MT5
from ordermesh.contract.wire import Side
from ordermesh.platform.bus import Bus


def test_registry_builds_an_mt5_adapter_with_substituted_ports() -> None:
    reg = BrokerRegistry(
        {
            "mt5": {"type": "mt5", "command_port": "${MT5_PORT}", "single_socket": True},
            "bad": {"type": "mt5", "nope": 1},
        },
        env={"MT5_PORT": "25555"},
    )
    settings = reg.settings("mt5")
    assert isinstance(settings, MT5Settings) and settings.command_port == 25555 and settings.single_socket
    adapter = reg.adapter("mt5")
    assert isinstance(adapter, MT5Adapter) and adapter.ports == (25555, 15556, 15557, 15558)
    assert [line.split(":")[0] for line in reg.validate()] == ["error"]


async def test_ticket_map_persists_in_kv(bus: Bus) -> None:
    kv = await bus.kv(KV_MT5)
    store = KvTicketStore(kv, "mt5")
    rec = TicketRecord(client_order_id="om-" + "a" * 28, symbol="EURUSD", side=Side.BUY,
                       action_type="ORDER_TYPE_BUY", volume=Decimal("0.1"), order=-2147483648, position_id=7,
                       state="FILLED", fills=[BrokerFill(fill_id="150000001", quantity=Decimal("0.1"),
                                                         price=Decimal("1.08505"))])  # fmt: skip
    await store.put(rec)
    await KvTicketStore(kv, "other").put(TicketRecord(client_order_id="x", symbol="GBPUSD", side=Side.SELL,
                                                       action_type="ORDER_TYPE_SELL", volume=Decimal(1)))  # fmt: skip
    assert await KvTicketStore(kv, "mt5").load() == [rec]
