"""ordermesh.platform.metrics: names after the Prometheus guide, bounded labels without a pid, one registry per
process with only its own families, series started at zero, and gauges set from a service's state."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from prometheus_client import generate_latest

from ordermesh.contract.wire import TradingState
from ordermesh.platform import metrics
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings

D = Decimal


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ordermesh_")}


def test_names_follow_the_naming_guide() -> None:
    names = [f.name for f in metrics.FAMILIES]
    assert len(names) == len(set(names))
    for f in metrics.FAMILIES:
        assert f.name.startswith("ordermesh_") and f.help, f.name
        assert (f.kind == "counter") == f.name.endswith("_total"), f.name
        if f.kind == "histogram":
            assert f.name.endswith(("_seconds", "_ratio")), f.name
        if "bps" in f.name or "millis" in f.name:
            raise AssertionError(f"{f.name}: not a base unit")
        for label in f.labels:
            assert label.name not in ("instance", "job"), f.name
            assert label.values or label.bound, (f.name, label.name)
    money = [f for f in metrics.FAMILIES if f.name.startswith("ordermesh_account_") and "ratio" not in f.name]
    assert money and all("currency" in [label.name for label in f.labels] for f in money)


def test_a_process_serves_only_its_own_families() -> None:
    sizer = families(generate_latest(metrics.registry([metrics.SIZER])).decode())
    gateway = families(generate_latest(metrics.registry(metrics.gateway_groups("paper"))).decode())
    mt5 = families(generate_latest(metrics.registry(metrics.gateway_groups("mt5"))).decode())
    assert "ordermesh_sizings_total" in sizer and "ordermesh_mt5_ambiguous_total" not in sizer
    assert "ordermesh_commands_total" not in sizer and "ordermesh_position_quantity" not in sizer
    assert "ordermesh_messages_total" in sizer & gateway & mt5  # the runtime's, everywhere
    assert "ordermesh_mt5_ambiguous_total" in mt5 and "ordermesh_mt5_ambiguous_total" not in gateway
    assert "ordermesh_broker_weight_used" not in gateway | mt5
    assert "ordermesh_commands_total" in gateway & mt5


def test_known_series_start_at_zero() -> None:
    groups = metrics.gateway_groups("paper")
    metrics.start_at_zero(groups, {"service": ("gateway",), "broker_id": ("zero-test",), "consumer": ("gw-zero-test",),
                                   "hop": ("command_to_ack",)})  # fmt: skip
    text = generate_latest(metrics.registry(groups)).decode()
    for line in (
        'ordermesh_broker_reconnects_total{broker_id="zero-test"} 0.0',
        'ordermesh_refusals_total{category="BROKER",service="gateway"} 0.0',
        'ordermesh_messages_total{consumer="gw-zero-test",outcome="retry",service="gateway"} 0.0',
        'ordermesh_broker_rate_limit_used_ratio{broker_id="zero-test"} 0.0',
        'ordermesh_hop_latency_seconds_count{hop="command_to_ack"} 0.0',
    ):
        assert line in text, line
    assert 'hop="intent_to_order"' not in text  # the sizer's hop is not the gateway's
    assert "_created" not in text


def test_the_nats_label_is_the_kind_never_the_pid() -> None:
    assert Bus(NatsSettings(), "sizer:vm-11946").metric_name == "sizer"
    assert Bus(NatsSettings(), "ordermesh-up").metric_name == "ordermesh-up"


def test_trading_state_is_one_series_per_scope_and_state() -> None:
    metrics.observe_trading(
        TradingState.ACTIVE,
        {"paper-1": TradingState.HALTED},
        {("paper-1", "s1"): TradingState.REDUCING},
        known_accounts=["paper-1", "paper-2"],
    )
    got = {
        (s.labels["scope_kind"], s.labels["scope"], s.labels["state"]): s.value
        for s in metrics.TRADING_STATE.collect()[0].samples
    }
    assert len(got) == 4 * 3
    assert got[("global", "global", "ACTIVE")] == 1 and got[("global", "global", "HALTED")] == 0
    assert got[("account", "paper-1", "HALTED")] == 1 and got[("account", "paper-1", "ACTIVE")] == 0
    assert got[("account", "paper-2", "ACTIVE")] == 1
    assert got[("strategy", "paper-1/s1", "REDUCING")] == 1
    metrics.observe_trading(TradingState.HALTED, {}, {})
    states = {s.labels["state"]: s.value for s in metrics.TRADING_STATE.collect()[0].samples}
    assert states == {"ACTIVE": 0, "REDUCING": 0, "HALTED": 1}  # scopes no longer known are gone


def test_books_and_daily_loss_from_state() -> None:
    state = SimpleNamespace(account="paper-1", currency="USD", balance=D(1000), equity=D(800), margin_used=D(200),
                            realized_pnl=D(-50), unrealized_pnl=D(-200))  # fmt: skip
    pos = SimpleNamespace(account="paper-1", symbol="EURUSD", quantity=D("0.5"), realized_pnl=D(3),
                          unrealized_pnl=D(-1), strategy_id="s1")  # fmt: skip
    metrics.observe_books([state], [pos, pos], {"EURUSD": "USD"})
    assert metrics.ACCOUNT_EQUITY.labels("paper-1", "USD")._value.get() == 800
    assert metrics.ACCOUNT_MARGIN_USED_RATIO.labels("paper-1")._value.get() == 0.25
    assert metrics.POSITION_QTY.labels("paper-1", "s1", "EURUSD")._value.get() == 1.0  # summed
    assert metrics.POSITION_UNREALIZED_PNL.labels("paper-1", "s1", "EURUSD", "USD")._value.get() == -2
    flat = SimpleNamespace(**{**vars(pos), "quantity": D(0)})
    metrics.observe_books([state], [flat], {})
    assert not [s for s in metrics.POSITION_QTY.collect()[0].samples]  # a closed position's series is gone
    metrics.observe_daily_loss({"paper-1": (D(400), D(500)), "paper-2": None})
    assert {s.labels["account"]: s.value for s in metrics.DAILY_LOSS_USED.collect()[0].samples} == {"paper-1": 0.8}


def test_a_redelivery_is_told_from_the_reply_subject_as_nats_py_reads_it() -> None:
    from nats.aio.msg import Msg

    from ordermesh.platform.runtime import _redelivered

    for reply in (
        "$JS.ACK.OM_INTENTS.sizer.1.12.12.1700000000000000000.0",
        "$JS.ACK.OM_INTENTS.sizer.4.12.13.1700000000000000000.7",
        "$JS.ACK.hub.ACCHASH.OM_EXEC.router-exec.1.99.98.1700000000000000000.0.rand",
        "$JS.ACK.hub.ACCHASH.OM_EXEC.router-exec.2.99.98.1700000000000000000.0.rand",
    ):
        msg = Msg(_client=None, subject="om.x", reply=reply, data=b"")  # type: ignore[arg-type]
        assert _redelivered(msg) is (msg.metadata.num_delivered > 1), reply
    assert _redelivered(Msg(_client=None, subject="om.x", reply="", data=b"")) is False  # type: ignore[arg-type]
