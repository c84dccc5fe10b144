"""Extreme values at every stage of a running system: whoever sent an intent, an order request or a command that
cannot be processed hears a refusal with the reason, within 2 s, and the bad input is counted; nothing retries
for ever and the next valid intent fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ordermesh.contract.ids import client_order_id, new_intent_id
from ordermesh.contract.wire import (
    IntentRejected,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectCategory,
    RiskPct,
    Side,
)
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests.harness import System

D = Decimal
WITHIN = 2.0  # seconds: the acceptance bound for a refusal


async def _publish_raw(om: OrderMeshClient, subject: str, data: dict[str, Any]) -> None:
    await om.bus.js.publish(subject, msgspec.msgpack.encode(data), headers={"Nats-Msg-Id": new_intent_id()})


async def test_intents_with_extreme_values_are_refused_to_their_strategy_with_the_reason(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("extreme", url=nats_server.url) as om:
            # the SDK itself refuses to build it: the caller has the reason at once, nothing is published
            with pytest.raises(ValueError, match="qty must be a finite number below 1e15, not 1E"):
                await om.buy("EURUSD", D("1e999999"))

            # the same intents sent past the SDK (another client, another language): the sizer refuses them
            undecodable = {
                "qty=1e999999": ({"sizing": {"kind": "fixed", "qty": "1e999999"}}, "qty"),
                "qty=NaN": ({"sizing": {"kind": "fixed", "qty": "NaN"}}, "qty"),
                "qty=-Infinity": ({"sizing": {"kind": "fixed", "qty": "-Infinity"}}, "qty"),
                "qty=1e300": ({"sizing": {"kind": "fixed", "qty": "1e300"}}, "qty"),
                "limit=1e999999": ({"order_type": "LIMIT", "limit_price": "1e999999"}, "limit_price"),
                "qty is a list": ({"sizing": {"kind": "fixed", "qty": [1, 2]}}, "qty"),
            }
            sent: dict[str, tuple[str, str]] = {}
            for name, (fields, field) in undecodable.items():
                raw = msgspec.to_builtins(om.intent(Side.BUY, "EURUSD", D("0.10")))
                raw.update(fields)
                await _publish_raw(om, om.subjects.intent("extreme"), raw)
                sent[name] = (raw["intent_id"], field)
            # fine on the wire, impossible to size: the arithmetic overflows or the margin is beyond any bound
            overflow = om.intent(Side.BUY, "EURUSD", sizing=RiskPct(risk_pct=D("0.01"), stop_loss_pips=D("1e-999999")))
            huge = om.intent(Side.BUY, "EURUSD", D("999999999999999"))
            for intent in (overflow, huge):
                await om.submit(intent)

            for name, (intent_id, field) in sent.items():
                out = await om.wait(intent_id, timeout=WITHIN)
                assert isinstance(out, IntentRejected), (name, out)
                assert out.category is RejectCategory.INVALID and field in out.reason, (name, out.reason)
                assert out.strategy_id == "extreme" and out.symbol == "EURUSD" and out.account == "paper-1"
            out = await om.wait(overflow.intent_id, timeout=WITHIN)
            assert isinstance(out, IntentRejected), out
            assert out.reason.startswith("INVALID: unprocessable: cannot size this intent: "), out.reason
            # 1e15 - 1 lots: the sizer refuses it when it can price its margin (a quote has arrived), else the
            # router's lot limit does; either way a refusal with its reason, in time
            out = await om.wait(huge.intent_id, timeout=WITHIN)
            sized_out = isinstance(out, IntentRejected)
            if sized_out:
                assert out.reason.startswith("INVALID: unprocessable: cannot size this intent: "), out.reason
            else:
                assert isinstance(out, OrderDenied), out
                assert out.reason == "RISK: quantity 999999999999999 is above the maximum 100 for EURUSD"

            def counted(reason: str) -> float:
                return system.metric("sizer", "ordermesh_bad_messages_total", service="sizer", reason=reason)

            assert counted("invalid") == len(undecodable)
            assert counted("unprocessable") == (2 if sized_out else 1)
            assert system.metric("sizer", "ordermesh_handler_errors_total", service="sizer", consumer="sizer") == 0

            # an intent that names another strategy than the subject it came on is not answered in that name
            raw = msgspec.to_builtins(om.intent(Side.BUY, "EURUSD", D("0.10")))
            raw.update(strategy_id="someone-else", sizing={"kind": "fixed", "qty": "NaN"})
            await _publish_raw(om, om.subjects.intent("extreme"), raw)

            out = await om.wait(await om.buy("EURUSD", D("0.10")), timeout=10)
            assert isinstance(out, OrderFilled), out
            assert counted("invalid") == len(undecodable) + 1  # counted, and handled before the valid one
            info = await om.bus.js.consumer_info("OM_EXEC", "router-exec")
            assert info.num_redelivered == 0
            rejects = await om.bus.js.stream_info("OM_EXEC", subjects_filter="om.reject.someone-else")
            assert not rejects.state.subjects


async def test_order_requests_and_commands_with_extreme_values_are_refused_with_the_reason(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("extreme", url=nats_server.url) as om:
            # an order request the router cannot read: denied to the strategy of its intent
            intent = om.intent(Side.BUY, "EURUSD", D("0.10"))
            raw = {
                "type": "order_request",
                "v": 1,
                "intent": msgspec.to_builtins(intent),
                "quantity": "NaN",
                "sizing_audit": {"method": "fixed", "status": "ok", "account_balance": "1", "risk_amount": "0",
                                 "lot_size": "0.1"},
            }  # fmt: skip
            await _publish_raw(om, om.subjects.order("paper-1"), raw)
            out = await om.wait(intent.intent_id, timeout=WITHIN)
            assert isinstance(out, OrderDenied), out
            assert out.category is RejectCategory.INVALID and "quantity" in out.reason
            assert out.client_order_id == client_order_id("paper-1", intent.intent_id)

            # commands given straight to the gateway: an unreadable quantity, and one no margin can carry
            def command(intent_id: str, quantity: str) -> dict[str, Any]:
                coid = client_order_id("paper-1", intent_id)
                cmd = PlaceOrder(
                    command_id=f"place:{coid}", client_order_id=coid, intent_id=intent_id, strategy_id="extreme",
                    account="paper-1", broker_id="paper", symbol="EURUSD", side=Side.BUY,
                    order_type=OrderType.MARKET, quantity=D(1),
                )  # fmt: skip
                return {**msgspec.to_builtins(cmd), "quantity": quantity}

            for quantity, category, text in (
                ("1e999999", RejectCategory.INVALID, "quantity must be a finite number below 1e15"),
                ("-5", RejectCategory.INVALID, "quantity must not be negative"),
                ("99999999999999", RejectCategory.INSUFFICIENT_FUNDS, "margin"),
            ):
                intent_id = new_intent_id()
                await _publish_raw(om, om.subjects.cmd("paper"), command(intent_id, quantity))
                out = await om.wait(intent_id, timeout=WITHIN)
                assert isinstance(out, OrderRejected), (quantity, out)
                assert out.category is category and text in out.reason, (quantity, out.reason)

            assert system.metric("router", "ordermesh_bad_messages_total", service="router", reason="invalid") == 1
            assert system.metric("gateway", "ordermesh_bad_messages_total", service="gateway", reason="invalid") == 2
            for consumer in ("gw-paper", "router"):
                stream = "OM_COMMANDS" if consumer == "gw-paper" else "OM_ORDERS"
                info = await om.bus.js.consumer_info(stream, consumer)
                assert info.num_redelivered == 0 and info.num_ack_pending == 0, consumer

            out = await om.wait(await om.buy("EURUSD", D("0.10")), timeout=10)
            assert isinstance(out, OrderFilled), out
