"""Sizing end to end: Kelly intents through the running processes on a real nats-server."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ordermesh.contract.codec import ORDER_CODEC, encode
from ordermesh.contract.subjects import KV_ACCOUNTS, KV_INSTRUMENTS, ORDERS, kv_key
from ordermesh.contract.wire import AccountState, IntentRejected, Kelly, OrderFilled, OrderRequest, RejectCategory, Side
from ordermesh.platform.bus import Bus
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from ordermesh.sizing.engine import AccountView, Sizer
from ordermesh.sizing.instruments import InstrumentOverride, encode_override, instrument_key, load_instruments
from ordermesh.sizing.kelly import EnhancedKellyCalculator
from tests.harness import System, eventually

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "kelly-1"  # deposit 10,000: the state the test writes is the keeper's own
SEED_KELLY = Kelly(
    win_rate=0.55,
    avg_win=D(400),
    avg_loss=D(200),
    stop_loss_pips=D(20),
    current_atr=D("0.0012"),
    average_atr=D("0.0010"),
)
NEGATIVE = Kelly(
    win_rate=0.40,
    avg_win=D(100),
    avg_loss=D(100),
    stop_loss_pips=D(20),
    current_atr=D("0.0010"),
    average_atr=D("0.0010"),
)


async def order_request(bus: Bus, intent_id: str) -> OrderRequest:
    """The sized order as the sizer stored it in OM_ORDERS."""
    for seq in range(1, await bus.stream_last_seq(ORDERS) + 1):
        req = ORDER_CODEC.decode((await bus.js.get_msg(ORDERS, seq)).data)
        if req.intent.intent_id == intent_id:
            return req
    raise AssertionError(f"no order request for {intent_id} in {ORDERS}")


async def _has_key(kv: KeyValue, key: str) -> bool:
    try:
        return (await kv.get(key)).value is not None
    except KeyNotFoundError:
        return False


def _logged(path: Path, *needles: str) -> bool:
    return path.exists() and any(all(n in line for n in needles) for line in path.read_text().splitlines())


async def test_kelly_intents_are_sized_exactly_and_refused_with_the_audit(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    specs = load_instruments(ROOT / "deploy" / "instruments.yaml")
    local = Sizer(None, specs)
    account = AccountView(balance=D(10000), free_margin=D(10000), currency="USD")
    coarse = InstrumentOverride(lot_step=D("0.1"), min_lot=D("0.1"), tick_size=D("0.00001"))
    config = tmp_path / "om.yaml"  # the account must be configured (an unknown one is refused)
    config.write_text(f"accounts:\n  paper-1: {{}}\n  {ACCOUNT}: {{deposit: '10000'}}\n")
    async with System(nats_server.url, tmp_path, config=config) as system:
        await system.start_all()  # the services create the streams: a client never does
        async with OrderMeshClient("kelly", url=nats_server.url, account=ACCOUNT) as om:
            bus = om.bus
            # The keeper's state of the account (an account the keeper does not manage, so it stays as written).
            state = AccountState(account=ACCOUNT, balance=D(10000), equity=D(10000), free_margin=D(10000))
            await (await bus.kv(KV_ACCOUNTS)).put(kv_key(ACCOUNT), encode(state))
            # The paper gateway reports its symbols' tick sizes at start; a broker that trades GBPUSD in 0.1 lots
            # says so too. The sizer mirrors the bucket and logs each report it applies.
            reports = await bus.kv(KV_INSTRUMENTS)
            gbp_key = instrument_key("paper", "GBPUSD")
            await eventually(lambda: _has_key(reports, gbp_key), what="the paper gateway reporting GBPUSD")
            await reports.put(gbp_key, encode_override(coarse))
            await eventually(
                lambda: asyncio.to_thread(
                    _logged, tmp_path / "sizer.log", "instrument report applied", "GBPUSD", "0.1..100 step 0.1"
                ),
                what="the sizer applying the GBPUSD report",
            )

            eur = om.intent(Side.BUY, "EURUSD", sizing=SEED_KELLY, reference_price=D("1.085"))
            gbp = om.intent(Side.BUY, "GBPUSD", sizing=SEED_KELLY, reference_price=D("1.27"))
            neg = om.intent(Side.SELL, "EURUSD", sizing=NEGATIVE, reference_price=D("1.085"))
            for i in (eur, gbp, neg):
                await om.submit(i)

            # EURUSD: the calculator's number, filled; the audit rides on the order request
            calculated = EnhancedKellyCalculator().calculate(
                D(10000), 0.55, D(400), D(200), D("0.0012"), D("0.0010"), D(20), D(10)
            )
            assert calculated.position_size == D("0.83")
            filled = await om.wait(eur.intent_id, timeout=20)
            assert isinstance(filled, OrderFilled), filled
            assert (filled.cum_qty, filled.leaves_qty) == (calculated.position_size, 0)
            req = await order_request(bus, eur.intent_id)
            assert req.quantity == calculated.position_size
            expected = local.size(eur, account)
            assert isinstance(expected, OrderRequest)
            assert req.sizing_audit == expected.sizing_audit
            assert req.sizing_audit.kelly_f == calculated.kelly_f
            assert req.sizing_audit.calculation_steps[3:-1] == calculated.adjustments
            assert req.sizing_audit.estimated_margin == D("3001.833333333333333333333332")

            # GBPUSD: the gateway's report (lot step 0.1) wins over the file's 0.01
            filled = await om.wait(gbp.intent_id, timeout=20)
            assert isinstance(filled, OrderFilled), filled
            assert filled.cum_qty == D("0.8")
            req = await order_request(bus, gbp.intent_id)
            expected = local.size(gbp, account, instrument=coarse.apply(specs["GBPUSD"]))
            assert isinstance(expected, OrderRequest)
            assert req.sizing_audit == expected.sizing_audit

            # negative expectancy: refused with the reason and the audit, nothing sent to the router
            refused = await om.wait(neg.intent_id, timeout=20)
            assert isinstance(refused, IntentRejected), refused
            assert refused.category is RejectCategory.SIZING
            assert refused.reason == "SIZING: zero: Negative expectancy (base Kelly <= 0): no edge, no trade"
            expected_refusal = local.size(neg, account)
            assert isinstance(expected_refusal, IntentRejected)
            assert refused.sizing_audit == expected_refusal.sizing_audit
            assert refused.sizing_audit is not None and refused.sizing_audit.base_kelly_f == D("-0.2")
            assert await bus.stream_last_seq(ORDERS) == 2

            def sizings(status: str) -> float:
                return system.metric("sizer", "ordermesh_sizings_total", method="kelly", status=status)

            assert (sizings("calculated"), sizings("zero")) == (2, 1)
            assert system.metric("sizer", "ordermesh_sizing_seconds_count", method="kelly") == 3
