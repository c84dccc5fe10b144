"""The sizer's pure domain code: Fixed, Kelly and RiskPct intents into orders with their audit, or refusals
with status, reason and audit; the PositionSizingResult rules and methods."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.contract.codec import ORDER_CODEC, REPORT_CODEC, encode
from ordermesh.contract.wire import (
    Fixed,
    Intent,
    IntentRejected,
    Kelly,
    OrderRequest,
    OrderType,
    PositionSizingResult,
    RejectCategory,
    RiskPct,
    Side,
    SizingRequest,
)
from ordermesh.sizing.engine import AccountView, Sizer, outcome_labels, size_intent
from ordermesh.sizing.instruments import InstrumentOverride, load_instruments
from ordermesh.sizing.kelly import FLOOR, EnhancedKellyCalculator, preset

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SPECS = load_instruments(ROOT / "deploy" / "instruments.yaml")
SIZER = Sizer(None, SPECS)
ACCOUNT = AccountView(balance=D(10000), free_margin=D(10000))
SEED_KELLY = Kelly(
    win_rate=0.55,
    avg_win=D(400),
    avg_loss=D(200),
    stop_loss_pips=D(20),
    current_atr=D("0.0012"),
    average_atr=D("0.0010"),
)


def intent(sizing: SizingRequest = SEED_KELLY, symbol: str = "EURUSD", **kw: object) -> Intent:
    fields: dict[str, object] = dict(
        intent_id="i1", strategy_id="s1", account="acc", symbol=symbol, side=Side.BUY, sizing=sizing
    )
    fields.update(kw)
    return Intent(**fields)  # type: ignore[arg-type]


def order(out: OrderRequest | IntentRejected) -> OrderRequest:
    assert isinstance(out, OrderRequest), getattr(out, "reason", out)
    return out


def refusal(out: OrderRequest | IntentRejected) -> IntentRejected:
    assert isinstance(out, IntentRejected), out
    assert out.sizing_audit is not None
    return out


# ------------------------------------------------------------------------------------------ kelly


def test_kelly_intent_is_sized_by_the_calculator_with_the_full_audit() -> None:
    out = order(SIZER.size(intent(reference_price=D("1.085")), ACCOUNT))
    expected = EnhancedKellyCalculator().calculate(D(10000), 0.55, D(400), D(200), D("0.0012"), D("0.0010"), D(20))
    assert out.quantity == expected.position_size == D("0.83")
    a = out.sizing_audit
    assert (a.method, a.status, a.currency, a.symbol) == ("kelly", "calculated", "USD", "EURUSD")
    assert (a.account_balance, a.stop_loss_pips, a.pip_value, a.lot_size) == (D(10000), D(20), D(10), D("0.83"))
    assert a.risk_amount == D(166)  # what the 0.83 lots lose at the stop: 0.83 * 20 * 10
    assert a.risk_budget == expected.risk_amount == D("166.6666666666666666666666666")
    assert (a.max_risk_amount, a.kelly_f, a.base_kelly_f) == (D(200), expected.kelly_f, D("0.325"))
    assert a.estimated_margin == D("3001.833333333333333333333332")  # 0.83 * 100000 / 30 EUR * 1.085
    assert a.remaining_margin == D("6998.166666666666666666666668")
    assert a.calculation_steps[:3] == [
        "Instrument EURUSD (forex, EUR/USD): pip size 0.0001, contract 100000, lots 0.01..100 step 0.01, "
        "leverage 30, margin rate 1",
        "Pip value per lot = 0.0001 * 100000 = 10.0000 USD",
        "Account balance 10000 USD, free margin 10000 USD (keeper state)",
    ]
    assert a.calculation_steps[3:-1] == expected.adjustments
    assert a.calculation_steps[-1] == (
        "Margin per lot = 100000 * 1 / 30 = 3333.33 EUR * EURUSD rate 1.085 = 3616.67 USD; "
        "estimated margin * 0.83 lots = 3001.83; remaining margin 10000 - 3001.83 -> 6998.17"
    )
    assert a.problems() == []
    assert ORDER_CODEC.decode(encode(out)) == out  # the audit travels exactly
    assert outcome_labels(out.intent, out) == ("kelly", "calculated")


def test_kelly_uses_the_instruments_lot_constraints_and_a_gateways_report() -> None:
    assert order(SIZER.size(intent(), ACCOUNT)).quantity == D("0.83")
    coarse = InstrumentOverride(lot_step=D("0.1"), min_lot=D("0.1")).apply(SPECS["EURUSD"])
    assert order(SIZER.size(intent(), ACCOUNT, instrument=coarse)).quantity == D("0.8")
    btc = Kelly(
        win_rate=0.55,
        avg_win=D(400),
        avg_loss=D(200),
        stop_loss_pips=D(500),
        current_atr=D(900),
        average_atr=D(1000),
    )
    # BTCUSD: 1 USD per pip per lot; ratio 0.9: 0.02 * (1000 / 900) = 0.0222 -> capped at 0.02; 200 / 500
    rich = AccountView(balance=D(10000), free_margin=D(100000))
    out = order(SIZER.size(intent(btc, "BTCUSD", reference_price=D(65000)), rich))
    assert out.quantity == D("0.400")
    assert out.sizing_audit.estimated_margin == D(13000)  # 0.4 * 65000 / 2


def test_pip_value_conversion_for_usdjpy_and_eurgbp() -> None:
    jpy = order(SIZER.size(intent(RiskPct(risk_pct=D("0.01"), stop_loss_pips=D(25)), "USDJPY"), ACCOUNT,
                           prices={"USDJPY": D(150)}))  # fmt: skip
    assert jpy.sizing_audit.pip_value == D("6.666666666666666666666666666")
    assert jpy.quantity == D("0.60")  # 100 / (25 * 6.67)
    assert jpy.sizing_audit.risk_amount <= D(100)
    assert jpy.sizing_audit.estimated_margin == D("1999.999999999999999999999999")  # 0.6 * 100000 / 30 USD
    # the order's own price answers for its own symbol before the quotes do
    own = order(SIZER.size(intent(RiskPct(risk_pct=D("0.01"), stop_loss_pips=D(25)), "USDJPY",
                                  reference_price=D(100)), ACCOUNT, prices={"USDJPY": D(150)}))  # fmt: skip
    assert (own.sizing_audit.pip_value, own.quantity) == (D(10), D("0.40"))
    gbp = order(SIZER.size(intent(symbol="EURGBP"), ACCOUNT, prices={"GBPUSD": D("1.25"), "EURUSD": D("1.1")}))
    assert gbp.sizing_audit.pip_value == D("12.5")
    assert gbp.quantity == D("0.66")  # 166.67 / (20 * 12.5)
    assert gbp.sizing_audit.estimated_margin == D("2419.999999999999999999999999")  # 0.66 * 3333.33 * 1.1
    missing = refusal(SIZER.size(intent(symbol="EURGBP"), ACCOUNT))
    assert missing.category is RejectCategory.SIZING
    assert missing.reason == (
        "SIZING: no_price: pip value of EURGBP: no price to convert GBP to USD (needs GBPUSD or USDGBP)"
    )
    assert missing.sizing_audit is not None and missing.sizing_audit.status == "no_price"


def test_margin_is_left_out_without_a_price() -> None:
    out = order(SIZER.size(intent(), ACCOUNT))  # EURUSD margin is in EUR: needs the EURUSD price
    assert (out.sizing_audit.estimated_margin, out.sizing_audit.remaining_margin) == (None, None)
    assert out.sizing_audit.calculation_steps[-1] == (
        "margin not estimated: no price to convert EUR to USD (needs EURUSD or USDEUR)"
    )
    unknown_free = order(SIZER.size(intent(reference_price=D("1.085")), AccountView(balance=D(10000))))
    assert unknown_free.sizing_audit.remaining_margin is None
    assert unknown_free.sizing_audit.calculation_steps[-1].endswith("= 3001.83; free margin unknown")


def test_negative_expectancy_is_refused_with_reason_and_audit() -> None:
    bad = Kelly(
        win_rate=0.40,
        avg_win=D(100),
        avg_loss=D(100),
        stop_loss_pips=D(20),
        current_atr=D(1),
        average_atr=D(1),
    )
    out = refusal(SIZER.size(intent(bad), ACCOUNT))
    assert out.category is RejectCategory.SIZING
    assert out.reason == "SIZING: zero: Negative expectancy (base Kelly <= 0): no edge, no trade"
    a = out.sizing_audit
    assert a is not None
    assert (a.status, a.lot_size, a.risk_amount, a.base_kelly_f, a.estimated_margin) == ("zero", 0, 0, D("-0.2"), None)
    assert a.is_zero_position()
    assert REPORT_CODEC.decode(encode(out)) == out
    assert outcome_labels(intent(bad), out) == ("kelly", "zero")


def test_fee_blocked_and_min_lot_over_cap_are_refused() -> None:
    fees = msgspec.structs.replace(SEED_KELLY, commission_per_lot=D(400))
    out = refusal(SIZER.size(intent(fees), ACCOUNT))
    assert out.reason == "SIZING: fee_blocked: FEE KILL SWITCH: fees per lot 400.00 >= average win 400.00: no trade"
    assert out.sizing_audit is not None and out.sizing_audit.base_kelly_f is None
    # balance 1000: cap 20; a 201-pip stop makes the minimum lot risk 20.10
    wide = msgspec.structs.replace(SEED_KELLY, stop_loss_pips=D(201))
    small = AccountView(balance=D(1000))
    out = refusal(SIZER.size(intent(wide), small))
    assert out.reason == (
        "SIZING: min_lot_over_cap: Below the minimum lot: the minimum lot 0.01 would risk 20.10, over the cap "
        "20.00: no trade"
    )
    at_cap = order(SIZER.size(intent(msgspec.structs.replace(SEED_KELLY, stop_loss_pips=D(200))), small))
    assert (at_cap.quantity, at_cap.sizing_audit.risk_amount, at_cap.sizing_audit.max_risk_amount) == (
        D("0.01"),
        D(20),
        D(20),
    )
    ftmo = Sizer(preset("ftmo_challenge"), SPECS)  # allow_zero_position: no minimum lot
    out = refusal(ftmo.size(intent(msgspec.structs.replace(SEED_KELLY, stop_loss_pips=D(200))), small))
    assert out.reason == "SIZING: zero: Below the minimum lot 0.01 and allow_zero_position: no trade"


def test_fallback_sizing_trades_with_its_status() -> None:
    few = msgspec.structs.replace(SEED_KELLY, trade_count=12)
    out = order(SIZER.size(intent(few), ACCOUNT))
    assert (out.quantity, out.sizing_audit.status) == (D("0.83"), "fallback")


@pytest.mark.parametrize(
    ("sizing", "reason"),
    [
        (
            msgspec.structs.replace(SEED_KELLY, win_rate=0.0),
            "INVALID: invalid: invalid Kelly request: win_rate must be between 0 (exclusive) and 1 (inclusive), "
            "got 0.0",
        ),
        (
            msgspec.structs.replace(SEED_KELLY, average_atr=D(0)),
            "INVALID: invalid: invalid Kelly request: average_atr must be positive, got 0",
        ),
        (
            msgspec.structs.replace(SEED_KELLY, stop_loss_pips=D(0)),
            "INVALID: invalid: stop_loss_pips must be positive, got 0",
        ),
        (RiskPct(risk_pct=D("1.5"), stop_loss_pips=D(20)), "INVALID: invalid: risk_pct must be in (0, 1], got 1.5"),
    ],
)
def test_invalid_requests_are_refused_with_the_audit(sizing: SizingRequest, reason: str) -> None:
    out = refusal(SIZER.size(intent(sizing), ACCOUNT))
    assert (out.category, out.reason) == (RejectCategory.INVALID, reason)
    assert out.sizing_audit is not None and out.sizing_audit.status == "invalid"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999999"])
def test_a_non_finite_or_huge_request_cannot_even_be_built(value: str) -> None:
    # refused where the message is made or decoded, before any sizing (the wire's bound: below 1e15)
    with pytest.raises(ValueError, match="risk_pct must be a finite number below 1e15"):
        RiskPct(risk_pct=D(value), stop_loss_pips=D(20))


def test_balance_rules_are_the_seeds() -> None:
    low = refusal(SIZER.size(intent(), AccountView(balance=D(50))))
    assert low.reason == "INVALID: invalid: account_balance (50) too low, minimum $100"
    high = refusal(SIZER.size(intent(), AccountView(balance=D("2e9"))))
    assert high.reason == "INVALID: invalid: account_balance (2E+9) unrealistically high"
    assert order(SIZER.size(intent(), AccountView(balance=D(100)))).quantity == D("0.01")  # cap 2 = 0.01 lot


def test_unknown_instrument() -> None:
    out = refusal(SIZER.size(intent(symbol="NOPE"), ACCOUNT))
    assert (out.category, out.sizing_audit.status) == (RejectCategory.INSTRUMENT, "unknown_instrument")  # type: ignore[union-attr]
    assert out.reason == (
        "INSTRUMENT: unknown_instrument: no instrument spec for NOPE (neither in the instruments file nor reported "
        "by a gateway)"
    )
    # a fixed size needs no spec: the venue decides; the audit says margin was not estimated
    fixed = order(SIZER.size(intent(Fixed(qty=D(1)), "NOPE"), ACCOUNT))
    assert fixed.sizing_audit.calculation_steps[-1] == "no instrument spec for NOPE: margin not estimated"


# ------------------------------------------------------------------------------------- risk pct


def test_risk_pct_sizes_and_is_capped() -> None:
    one = order(SIZER.size(intent(RiskPct(risk_pct=D("0.01"), stop_loss_pips=D(20))), ACCOUNT))
    assert (one.quantity, one.sizing_audit.risk_amount, one.sizing_audit.status) == (D("0.50"), D(100), "calculated")
    assert one.sizing_audit.calculation_steps[3:5] == [
        "Risk 1.00% requested (cap 2.00%)",
        "Risk amount = 10000 * 0.01 = 100.00 (cap 200.00)",
    ]
    five = order(SIZER.size(intent(RiskPct(risk_pct=D("0.05"), stop_loss_pips=D(20))), ACCOUNT))
    assert five.quantity == D("1.00")  # 5 % asked, the 2 % hard cap holds
    assert five.sizing_audit.calculation_steps[3] == "Risk 5.00% requested, capped at the 2.00% hard cap"
    assert outcome_labels(five.intent, five) == ("risk_pct", "calculated")


# ----------------------------------------------------------------------------------------- fixed


def test_fixed_size_gets_a_margin_estimate() -> None:
    out = order(SIZER.size(intent(Fixed(qty=D("0.1")), reference_price=D("1.085")), ACCOUNT))
    a = out.sizing_audit
    assert (out.quantity, a.method, a.status, a.risk_amount) == (D("0.1"), "fixed", "ok", 0)
    assert a.estimated_margin == D("361.6666666666666666666666666")
    assert a.remaining_margin == D("9638.333333333333333333333333")  # rounded down, like every figure
    assert size_intent(intent(Fixed(qty=D("0.5"))), D(1)).quantity == D("0.5")  # type: ignore[union-attr]


def test_insufficient_margin_is_refused_unless_reduce_only() -> None:
    poor = AccountView(balance=D(10000), free_margin=D(3000))
    out = refusal(SIZER.size(intent(reference_price=D("1.085")), poor))
    assert out.category is RejectCategory.INSUFFICIENT_FUNDS
    assert out.reason == (
        "INSUFFICIENT_FUNDS: insufficient_margin: estimated margin 3001.83 leaves no free margin (free 3000.00)"
    )
    assert out.sizing_audit is not None
    assert (out.sizing_audit.status, out.sizing_audit.remaining_margin) == ("insufficient_margin", 0)
    assert not out.sizing_audit.validate_margin_sufficiency()
    closing = order(SIZER.size(intent(reference_price=D("1.085"), reduce_only=True), poor))
    assert closing.sizing_audit.calculation_steps[-1] == "reduce-only: releases margin, not checked"


def test_intent_problems_come_before_sizing() -> None:
    out = SIZER.size(intent(order_type=OrderType.LIMIT), ACCOUNT)
    assert isinstance(out, IntentRejected) and out.sizing_audit is None
    assert out.reason == "INVALID: a LIMIT order needs limit_price"
    assert outcome_labels(intent(), out) == ("kelly", "invalid")


# ------------------------------------------------------------------------- PositionSizingResult


def audit(**kw: object) -> PositionSizingResult:
    fields: dict[str, object] = dict(
        method="kelly",
        status="calculated",
        account_balance=D(10000),
        risk_amount=D(200),
        stop_loss_pips=D(20),
        pip_value=D(10),
        lot_size=D("1.00"),
        estimated_margin=D(500),
        remaining_margin=D(9500),
        calculation_steps=["step one", "step two"],
    )
    fields.update(kw)
    return PositionSizingResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        ({"account_balance": D(99)}, ["account_balance (99) too low, minimum $100"]),
        ({"account_balance": D("1000000001")}, ["account_balance (1000000001) unrealistically high"]),
        ({"risk_amount": D(-1)}, ["risk_amount (-1) cannot be negative"]),
        ({"lot_size": D("-0.01")}, ["lot_size (-0.01) cannot be negative"]),
        ({"stop_loss_pips": D(0)}, ["stop_loss_pips (0) must be positive"]),
        ({"pip_value": D(-10)}, ["pip_value (-10) must be positive"]),
        ({"estimated_margin": D(-1)}, ["estimated_margin (-1) cannot be negative"]),
        (
            {"account_balance": D(0), "lot_size": D(-1)},
            ["account_balance (0) too low, minimum $100", "lot_size (-1) cannot be negative"],
        ),
    ],
)
def test_result_validation_has_the_seeds_rules_and_messages(fields: dict[str, object], problems: list[str]) -> None:
    bad = audit(**fields)
    assert bad.problems() == problems
    with pytest.raises(ValueError) as exc:
        bad.validate()
    assert str(exc.value) == "; ".join(problems)


def test_result_boundaries_are_valid() -> None:
    for fields in ({"account_balance": D(100)}, {"account_balance": D("1e9")}, {"lot_size": D(0), "risk_amount": D(0)}):
        assert audit(**fields).validate().problems() == []  # type: ignore[arg-type]
    assert audit(stop_loss_pips=None, pip_value=None).problems() == []  # a fixed size has neither


def test_result_methods() -> None:
    a = audit()
    assert a.risk_percentage() == D("0.02")
    assert a.risk_per_lot() == D(200)
    assert a.margin_utilization_pct() == D("0.05")
    assert a.validate_margin_sufficiency() is True
    assert audit(remaining_margin=D(0)).validate_margin_sufficiency() is False
    assert audit(remaining_margin=None).validate_margin_sufficiency() is True  # not estimated: cannot say no
    assert audit(estimated_margin=None).margin_utilization_pct() is None
    assert audit(stop_loss_pips=None).risk_per_lot() is None
    assert audit(account_balance=D(0)).risk_percentage() == 0
    assert not a.is_zero_position() and audit(lot_size=D("0.00")).is_zero_position()
    more = a.add_step("step three")
    assert more.calculation_steps == ["step one", "step two", "step three"]
    assert a.calculation_steps == ["step one", "step two"]  # frozen: the original is unchanged
    d = a.to_dict()
    assert (
        d["risk_percentage"] == D("0.02")
        and d["lot_size"] == D("1.00")
        and d["calculation_steps"] == a.calculation_steps
    )
    assert set(d) == {
        "method", "status", "currency", "account_balance", "risk_amount", "risk_percentage", "stop_loss_pips",
        "pip_value", "lot_size", "estimated_margin", "remaining_margin", "calculation_steps",
    }  # fmt: skip


def test_result_summary_and_json() -> None:
    a = audit(symbol="EURUSD")
    assert a.get_calculation_summary() == "\n".join(
        [
            "Position Sizing Calculation (kelly, calculated) EURUSD",
            "=" * 40,
            "Account Balance: 10,000.00 USD",
            "Risk Amount: 200.00 USD (2.00%)",
            "Stop Loss: 20.0 pips",
            "Pip Value: 10.0000 USD per lot",
            "Risk per Lot: 200.00 USD",
            "-" * 40,
            "Position Size: 1.00 lots",
            "Estimated Margin: 500.00 USD",
            "Remaining Margin: 9,500.00 USD",
            "-" * 40,
            "Calculation Steps:",
            "  1. step one",
            "  2. step two",
        ]
    )
    fixed = PositionSizingResult(method="fixed", status="ok", account_balance=D(5), risk_amount=D(0), lot_size=D(1))
    assert "Stop Loss" not in fixed.get_calculation_summary()
    data = msgspec.json.decode(a.model_dump_json_safe())
    assert data["account_balance"] == "10000" and data["lot_size"] == "1.00"  # exact: Decimals as strings
    assert "kelly_f" not in data and "risk_budget" not in data  # absent values are left out


# ------------------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["EURUSD", "USDJPY", "EURGBP", "XAUUSD", "BTCUSD"]),
    balance=st.decimals(min_value=D(100), max_value=D(10**9), places=2),
    win_rate=st.floats(min_value=0.05, max_value=1.0),
    avg_win=st.decimals(min_value=D(1), max_value=D(10000), places=2),
    avg_loss=st.decimals(min_value=D(1), max_value=D(10000), places=2),
    stop=st.decimals(min_value=D("0.5"), max_value=D(3000), places=1),
    current_atr=st.decimals(min_value=D(0), max_value=D(10), places=4),
    risk_pct=st.decimals(min_value=D("0.0001"), max_value=D(1), places=4),
    use_kelly=st.booleans(),
)
def test_any_sized_order_respects_the_cap_and_the_lot_grid(
    symbol: str,
    balance: Decimal,
    win_rate: float,
    avg_win: Decimal,
    avg_loss: Decimal,
    stop: Decimal,
    current_atr: Decimal,
    risk_pct: Decimal,
    use_kelly: bool,
) -> None:
    sizing: SizingRequest = (
        Kelly(
            win_rate=win_rate,
            avg_win=avg_win,
            avg_loss=avg_loss,
            stop_loss_pips=stop,
            current_atr=current_atr,
            average_atr=D(1),
        )
        if use_kelly
        else RiskPct(risk_pct=risk_pct, stop_loss_pips=stop)
    )
    prices = {
        "USDJPY": D("151.37"),
        "GBPUSD": D("1.2711"),
        "EURUSD": D("1.0843"),
        "XAUUSD": D(2311),
        "BTCUSD": D(64000),
    }
    out = SIZER.size(intent(sizing, symbol), AccountView(balance=balance), prices=prices)
    spec = SPECS[symbol]
    a = out.sizing_audit
    assert a is not None
    assert a.risk_amount <= balance * D("0.02")
    if isinstance(out, OrderRequest):
        assert spec.min_lot <= out.quantity <= spec.max_lot
        assert out.quantity % spec.lot_step == 0
        assert a.risk_amount == FLOOR.multiply(out.quantity, FLOOR.multiply(stop, a.pip_value))  # type: ignore[arg-type]
        assert a.problems() == []
    else:
        assert a.lot_size == 0


# ------------------------------------------------------------------------------------------- cli


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cli_size_prints_the_sizing_and_its_summary() -> None:
    out = cli(
        "size", "kelly", "EURUSD", "--balance", "10000", "--free-margin", "10000", "--win-rate", "0.55",
        "--avg-win", "400", "--avg-loss", "200", "--stop", "20", "--atr", "0.0012", "--avg-atr", "0.0010",
        "--price", "EURUSD=1.085",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Position Sizing Calculation (kelly, calculated) EURUSD"
    assert "Position Size: 0.83 lots" in lines
    assert "Estimated Margin: 3,001.83 USD" in lines
    assert "  3. Account balance 10000 USD, free margin 10000 USD (given)" in lines
    assert lines[-1] == "ORDER: BUY 0.83 EURUSD"


def test_cli_size_shows_a_refusal_and_risk_pct_conversion() -> None:
    out = cli("size", "risk-pct", "USDJPY", "--balance", "10000", "--risk", "0.01", "--stop", "25",
              "--price", "usdjpy=150", "--side", "sell")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Pip Value: 6.6667 USD per lot" in out.stdout.splitlines()
    assert out.stdout.splitlines()[-1] == "ORDER: SELL 0.60 USDJPY"
    refused = cli("size", "kelly", "EURUSD", "--win-rate", "0.4", "--avg-win", "100", "--avg-loss", "100",
                  "--stop", "20", "--atr", "1", "--avg-atr", "1")  # fmt: skip
    assert refused.returncode == 1
    assert "Account Balance: 100,000.00 USD" in refused.stdout  # sizer.fallback_balance when none is given
    assert refused.stdout.splitlines()[-1] == (
        "REJECTED: SIZING: zero: Negative expectancy (base Kelly <= 0): no edge, no trade"
    )
    fixed = cli("size", "fixed", "BTCUSD", "0.005", "--price", "BTCUSD=65000", "--preset", "ftmo_challenge")
    assert fixed.returncode == 0, fixed.stderr
    assert "Estimated Margin: 162.50 USD" in fixed.stdout.splitlines()


def test_a_bad_instruments_file_stops_the_sizer_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "om.yaml"
    cfg.write_text(f"sizer:\n  instruments_file: {tmp_path / 'missing.yaml'}\n")
    out = cli("--config", str(cfg), "sizer")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ordermesh: config error: cannot read instruments file {tmp_path / 'missing.yaml'}: No such file or directory"
    ]
    bad_preset = tmp_path / "preset.yaml"
    bad_preset.write_text("sizer:\n  kelly_preset: yolo\n")
    out = cli("--config", str(bad_preset), "size", "fixed", "EURUSD", "1")
    assert out.returncode == 2 and "$.sizer.kelly_preset" in out.stderr


def test_an_audit_failing_the_seeds_rules_is_never_sent() -> None:
    from ordermesh.sizing.engine import _validated_order

    out = _validated_order(intent(), audit(account_balance=D(50)))
    assert isinstance(out, IntentRejected) and out.category is RejectCategory.INTERNAL
    assert out.reason == "INTERNAL: invalid: audit failed validation: account_balance (50) too low, minimum $100"
    fixed = _validated_order(intent(Fixed(qty=D(1))), audit(method="fixed", account_balance=D(0)))
    assert isinstance(fixed, OrderRequest)


# ------------------------------------------------------------------------------- extreme values


@pytest.mark.parametrize(
    ("sizing", "symbol"),
    [
        (RiskPct(risk_pct=D("0.01"), stop_loss_pips=D("1e-999999")), "EURUSD"),  # lots = risk / tiny: overflow
        (msgspec.structs.replace(SEED_KELLY, stop_loss_pips=D("1e-999999")), "EURUSD"),
        (msgspec.structs.replace(SEED_KELLY, avg_loss=D("1e-999999")), "EURUSD"),
        (Fixed(qty=D("999999999999999")), "EURUSD"),  # its margin estimate is beyond what the wire carries
        (Fixed(qty=D("1e14")), "BTCUSD"),
    ],
)
def test_figures_the_arithmetic_cannot_handle_are_refused_never_raised(sizing: SizingRequest, symbol: str) -> None:
    prices = {"EURUSD": D("1.085"), "BTCUSD": D(65000)}
    out = SIZER.size(intent(sizing, symbol=symbol), ACCOUNT, prices=prices)
    assert isinstance(out, IntentRejected), out
    assert out.category is RejectCategory.INVALID
    assert out.reason.startswith("INVALID: unprocessable: cannot size this intent: ")
    assert outcome_labels(intent(sizing), out)[1] == "invalid"
    assert REPORT_CODEC.decode(encode(out)) == out  # and the refusal itself travels
