"""The Enhanced Kelly engine: every branch with exact numbers, the seed's published case, the two seed bugs
fixed, and properties (the cap is never exceeded, lots are whole lot steps within [0, max], a wider stop never
buys more)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.sizing.kelly import (
    PRESETS,
    EnhancedKellyCalculator,
    EnhancedKellyConfig,
    KellyResult,
    enhanced_kelly_position_size,
    floor_to_step,
    preset,
    to_decimal,
)

D = Decimal
SEED_CASE = dict(
    account_balance=D(10000),
    win_rate=0.55,
    avg_win=D(400),
    avg_loss=D(200),
    current_atr=D("0.0012"),
    average_atr=D("0.0010"),
    stop_loss_pips=D(20),
    pip_value=D(10),
)


def calc(config: EnhancedKellyConfig | None = None, **kw: object) -> KellyResult:
    return EnhancedKellyCalculator(config).calculate(**{**SEED_CASE, **kw})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ config


def test_config_defaults_are_the_seeds() -> None:
    c = EnhancedKellyConfig()
    assert (c.kelly_fraction, c.max_risk_pct) == (D("0.50"), D("0.02"))
    assert (c.high_vol_threshold, c.low_vol_threshold, c.low_vol_boost) == (D("1.3"), D("0.7"), D("1.2"))
    assert (c.min_trade_history, c.atr_period, c.confidence_interval) == (30, 20, 0.95)
    assert (c.min_lot_size, c.lot_step, c.max_lot_size) == (D("0.01"), D("0.01"), D(100))
    assert c.allow_zero_position is False
    assert (c.fallback_risk_pct, c.max_portfolio_risk_pct, c.enable_portfolio_scaling) == (D("0.02"), D("0.03"), True)
    assert c.validate() is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kelly_fraction": D(0)}, "kelly_fraction must be between 0 and 1, got 0"),
        ({"kelly_fraction": D("1.01")}, "kelly_fraction must be between 0 and 1, got 1.01"),
        ({"max_risk_pct": D(0)}, "max_risk_pct must be between 0 and 10%, got 0"),
        ({"max_risk_pct": D("0.11")}, "max_risk_pct must be between 0 and 10%, got 0.11"),
        (
            {"high_vol_threshold": D("0.7")},
            "high_vol_threshold must be > low_vol_threshold, got 0.7 <= 0.7",
        ),
        ({"min_trade_history": 9}, "min_trade_history should be at least 10, got 9"),
        ({"lot_step": D(0)}, "lot_step must be positive, got 0"),
        ({"min_lot_size": D(200)}, "min_lot_size must be positive and at most max_lot_size, got 200"),
        ({"min_lot_size": D("0.015")}, "min_lot_size must be a multiple of lot_step 0.01, got 0.015"),
        ({"fallback_risk_pct": D("0.2")}, "fallback_risk_pct must be between 0 and 10%, got 0.2"),
    ],
)
def test_config_validation_names_the_problem(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        EnhancedKellyConfig(**fields)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_config_from_yaml_like_data_is_validated() -> None:
    cfg = msgspec.convert({"kelly_fraction": "0.25", "max_risk_pct": "0.01"}, EnhancedKellyConfig, strict=False)
    assert (cfg.kelly_fraction, cfg.max_risk_pct) == (D("0.25"), D("0.01"))
    with pytest.raises(msgspec.ValidationError, match="max_risk_pct must be between 0 and 10%"):
        msgspec.convert({"max_risk_pct": "0.5"}, EnhancedKellyConfig, strict=False)


def test_presets_have_the_seeds_values() -> None:
    assert set(PRESETS) == {
        "default",
        "ftmo_challenge",
        "ftmo_funded",
        "the5ers",
        "personal_aggressive",
        "paper_trading",
    }
    ftmo = preset("ftmo_challenge")
    assert (ftmo.kelly_fraction, ftmo.max_risk_pct, ftmo.high_vol_threshold, ftmo.low_vol_boost) == (
        D("0.40"),
        D("0.01"),
        D("1.2"),
        D("1.1"),
    )
    assert ftmo.allow_zero_position is True
    funded = preset("ftmo_funded")
    assert (funded.kelly_fraction, funded.max_risk_pct, funded.high_vol_threshold, funded.low_vol_boost) == (
        D("0.55"),
        D("0.015"),
        D("1.3"),
        D("1.2"),
    )
    the5ers = preset("the5ers")
    assert (the5ers.kelly_fraction, the5ers.max_risk_pct, the5ers.max_portfolio_risk_pct) == (
        D("0.50"),
        D("0.02"),
        D("0.04"),
    )
    aggressive = preset("personal_aggressive")
    assert (aggressive.kelly_fraction, aggressive.max_risk_pct, aggressive.high_vol_threshold) == (
        D("0.60"),
        D("0.025"),
        D("1.5"),
    )
    assert aggressive.low_vol_boost == D("1.3")
    paper = preset("paper_trading")
    assert (paper.kelly_fraction, paper.max_risk_pct, paper.high_vol_threshold, paper.min_trade_history) == (
        D("0.70"),
        D("0.03"),
        D("1.5"),
        10,
    )
    with pytest.raises(ValueError, match="unknown Kelly preset 'nope'"):
        preset("nope")


# ------------------------------------------------------------------------------------- calculation


def test_seed_published_case() -> None:
    r = calc()
    assert r.base_kelly_f == D("0.325")
    # layer 1: 0.1625, layer 2: capped at 0.02, layer 3: * 1.0 * (0.0010 / 0.0012), ratio 1.2 is in the normal band
    assert r.kelly_f == D("0.01666666666666666666666666666")
    assert r.kelly_f < D("0.02")
    assert r.risk_amount == D("166.6666666666666666666666666")
    assert r.position_size == D("0.83")  # 166.67 / (20 pips * 10) = 0.8333 lots, floored to the 0.01 step
    assert r.status == "calculated"
    assert r.adjustments == [
        "Inputs valid: win rate in (0, 1], payoffs, stop, pip value, balance and ATRs positive",
        "R:R ratio = 400 / 200 = 2.0000",
        "Fee per lot = 0 (no commission, no spread): R:R unchanged",
        "Base Kelly = ((R + 1) * 0.55 - 1) / R = 0.3250 (32.50%)",
        "Layer 1 (* 0.50): 0.1625",
        "Layer 2 (capped at 2.00%): 0.0200",
        "Layer 3: ATR ratio 1.2000 (0.0012 / 0.0010), regime quality 1.0, volatility scalar 0.8333: 0.0200 -> 0.0167",
        "Risk amount = 10000 * 0.016667 = 166.67 (cap 200.00)",
        "Raw position = 166.67 / 200.00 risk per lot at the stop = 0.8333 lots",
        "Rounded position = 0.83 lots (floored to the lot step 0.01)",
    ]
    assert r.to_dict()["base_kelly"] == D("0.325")
    assert enhanced_kelly_position_size(10000, 0.55, 400, 200, 0.0012, 0.0010, 20, 10) == D("0.83")


def test_floats_and_decimals_give_the_same_exact_answer() -> None:
    as_floats = EnhancedKellyCalculator().calculate(10000.0, 0.55, 400.0, 200.0, 0.0012, 0.0010, 20.0, 10.0)
    exact = calc()
    assert (as_floats.position_size, as_floats.kelly_f, as_floats.base_kelly_f, as_floats.risk_amount) == (
        exact.position_size,
        exact.kelly_f,
        exact.base_kelly_f,
        exact.risk_amount,
    )


def test_cap_holds_in_the_normal_band_below_ratio_one() -> None:
    # Seed bug (a): ratio 0.8 is inside the normal band, the scalar 1/0.8 lifts 0.02 to 0.025 and the seed
    # traded 1.25 lots (2.5 % risk). Here the cap holds after layer 3 too.
    r = calc(current_atr=D("0.0008"))
    assert r.kelly_f == D("0.02")
    assert r.position_size == D("1.00")
    assert r.adjustments[-4] == "Layer 3 capped at 2.00%: 0.0200"


def test_low_volatility_boost_capped_and_uncapped() -> None:
    capped = calc(current_atr=D("0.0005"))  # ratio 0.5: 0.02 * 2 * 1.2 = 0.048 -> 0.02
    assert (capped.kelly_f, capped.position_size) == (D("0.02"), D("1.00"))
    assert "Layer 3 low volatility (ratio < 0.7): * 1.2 = 0.0480" in capped.adjustments
    # base (2.6 * 0.40 - 1) / 1.6 = 0.025, layer 1 0.0125; * 0.5 regime * (1 / 0.6) * 1.2 boost = 0.0125
    small = calc(win_rate=0.40, avg_win=D(160), avg_loss=D(100), current_atr=D("0.0006"), regime_quality=0.5)
    assert small.base_kelly_f == D("0.025")
    assert small.kelly_f == D("0.01249999999999999999999999999")  # every division rounds down
    assert small.position_size == D("0.62")  # 124.99 / 200 -> 0.62, never rounded up to 0.63
    assert small.status == "calculated"


def test_high_volatility_divides_again_by_the_ratio() -> None:
    r = calc(current_atr=D("0.0020"))  # ratio 2: 0.02 * 0.5 = 0.01, / 2 = 0.005
    assert r.kelly_f == D("0.005")
    assert r.risk_amount == D("50.000")
    assert r.position_size == D("0.25")
    assert "Layer 3 high volatility (ratio > 1.3): / 2.0000 = 0.0050" in r.adjustments


def test_layer_one_under_the_cap_is_not_capped() -> None:
    # base (2 * 0.52 - 1) / 1 = 0.04, layer 1 0.02 exactly: "within the cap"
    r = calc(win_rate=0.52, avg_win=D(100), avg_loss=D(100), current_atr=D("0.0010"))
    assert r.base_kelly_f == D("0.04")
    assert "Layer 2 (within the 2.00% cap): 0.0200" in r.adjustments
    assert (r.kelly_f, r.position_size) == (D("0.0200"), D("1.00"))


def test_zero_current_atr_means_no_volatility_scaling() -> None:
    r = calc(current_atr=D(0))  # ratio 0 < 0.7: the boost applies, then the cap
    assert r.kelly_f == D("0.02")
    assert "volatility scalar 1.0000" in r.adjustments[6]


def test_fees_reduce_the_payoff() -> None:
    r = calc(commission_per_lot=D(7), spread_pips=D(1))  # fee 17: (400 - 17) / (200 + 17)
    assert r.adjustments[2] == (
        "Fee per lot = 17.00 (commission 7 + spread 1 pips * 10); net avg win 383.00, net avg loss 217.00, "
        "fee-adjusted R:R = 1.7650"
    )
    assert r.base_kelly_f is not None
    assert r.base_kelly_f.quantize(D("0.0001")) == D("0.2950")
    assert r.position_size == D("0.83")


@pytest.mark.parametrize(
    ("commission", "spread"),
    [(D(400), D(0)), (D(0), D(40)), (D(390), D(1)), (D(500), D(0))],
)
def test_fees_equal_or_above_the_average_win_block_the_trade(commission: Decimal, spread: Decimal) -> None:
    # Seed bug (b): fees == avg_win made the net ratio 0 and base Kelly divided by it.
    r = calc(commission_per_lot=commission, spread_pips=spread)
    assert r.status == "fee_blocked"
    assert (r.position_size, r.kelly_f, r.risk_amount, r.base_kelly_f) == (0, 0, 0, None)
    assert r.adjustments[-1].startswith("FEE KILL SWITCH: fees per lot ")
    assert not any(line.startswith("Base Kelly") for line in r.adjustments)


def test_negative_and_zero_expectancy_trade_nothing() -> None:
    neg = calc(win_rate=0.40, avg_win=D(100), avg_loss=D(100))
    assert neg.base_kelly_f == D("-0.2")
    assert (neg.status, neg.position_size, neg.kelly_f, neg.risk_amount) == ("zero", 0, 0, 0)
    assert neg.adjustments[-1] == "Negative expectancy (base Kelly <= 0): no edge, no trade"
    flat = calc(win_rate=0.5, avg_win=D(100), avg_loss=D(100))
    assert (flat.base_kelly_f, flat.status, flat.position_size) == (0, "zero", 0)


def test_regime_quality_zero_trades_nothing_not_the_minimum_lot() -> None:
    r = calc(regime_quality=0.0)
    assert (r.status, r.position_size, r.kelly_f) == ("zero", 0, 0)
    assert r.adjustments[-1] == "Kelly fraction is 0 after layer 3 (regime quality 0): no trade"


def test_win_rate_one_is_allowed() -> None:
    r = calc(win_rate=1.0)
    assert r.base_kelly_f == 1
    assert r.kelly_f == D("0.01666666666666666666666666666")


def test_below_the_minimum_lot_takes_it_only_within_the_cap() -> None:
    # balance 1000: cap 20; stop 200 pips * 10 = 2000 per lot; raw 16.66 / 2000 = 0.0083 lots
    ok = calc(account_balance=D(1000), stop_loss_pips=D(200))
    assert (ok.position_size, ok.status) == (D("0.01"), "calculated")
    assert ok.adjustments[-1] == (
        "Below the minimum lot: the minimum lot 0.01 risks 20.00, within the cap 20.00: 0.01 lots"
    )
    over = calc(account_balance=D(1000), stop_loss_pips=D(201))
    assert (over.position_size, over.status) == (0, "min_lot_over_cap")
    assert over.adjustments[-1] == (
        "Below the minimum lot: the minimum lot 0.01 would risk 20.10, over the cap 20.00: no trade"
    )
    zero = calc(EnhancedKellyConfig(allow_zero_position=True), account_balance=D(1000), stop_loss_pips=D(200))
    assert (zero.position_size, zero.status) == (0, "zero")
    assert zero.adjustments[-1] == "Below the minimum lot 0.01 and allow_zero_position: no trade"


def test_clamped_to_the_maximum_lot() -> None:
    r = calc(account_balance=D(100_000_000), stop_loss_pips=D(1))
    assert r.position_size == D(100)
    assert "Clamped to the maximum lot 100" in r.adjustments


def test_other_lot_steps() -> None:
    cfg = EnhancedKellyConfig(min_lot_size=D("0.1"), lot_step=D("0.1"), max_lot_size=D(50))
    assert calc(cfg).position_size == D("0.8")
    micro = EnhancedKellyConfig(min_lot_size=D("0.001"), lot_step=D("0.001"))
    assert calc(micro).position_size == D("0.833")


def test_too_few_trades_use_the_fallback_risk() -> None:
    r = calc(trade_count=12)
    assert r.status == "fallback"
    assert r.adjustments[4] == (
        "Only 12 trades (< 30): Kelly statistics not trusted, fallback risk 2.00% instead of layers 1-2"
    )
    assert (r.kelly_f, r.position_size) == (D("0.01666666666666666666666666666"), D("0.83"))
    # the fallback never exceeds the hard cap: ftmo_challenge caps at 1 %
    ftmo = calc(preset("ftmo_challenge"), trade_count=5)
    assert ftmo.kelly_f == D("0.008333333333333333333333333333")
    assert ftmo.position_size == D("0.41")
    assert calc(trade_count=30).status == "calculated"
    # negative expectancy still trades nothing, even on few trades
    assert calc(trade_count=3, win_rate=0.3).status == "zero"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("win_rate", 0.0, "win_rate must be between 0 (exclusive) and 1 (inclusive), got 0.0"),
        ("win_rate", 1.5, "win_rate must be between 0 (exclusive) and 1 (inclusive), got 1.5"),
        ("avg_win", D(0), "avg_win must be positive, got 0"),
        ("avg_loss", D(-200), "avg_loss must be positive, got -200"),
        ("stop_loss_pips", D(0), "stop_loss_pips must be positive, got 0"),
        ("average_atr", D(0), "average_atr must be positive, got 0"),
        ("account_balance", D(0), "account_balance must be positive, got 0"),
        ("pip_value", D(0), "pip_value must be positive, got 0"),
        ("current_atr", D("-0.0001"), "current_atr must be zero or positive, got -0.0001"),
        ("regime_quality", 1.1, "regime_quality must be between 0 and 1, got 1.1"),
        ("regime_quality", -0.1, "regime_quality must be between 0 and 1, got -0.1"),
        ("commission_per_lot", D(-1), "commission_per_lot must be zero or positive, got -1"),
        ("spread_pips", D(-1), "spread_pips must be zero or positive, got -1"),
        ("avg_win", D("NaN"), "avg_win must be a finite number, got NaN"),
        ("win_rate", float("inf"), "win_rate must be a finite number, got inf"),
        ("avg_win", True, "avg_win must be a number, got True"),
        ("avg_win", "abc", "avg_win must be a number, got 'abc'"),
    ],
)
def test_invalid_inputs_are_refused_with_the_reason(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        calc(**{field: value})
    assert str(exc.value) == message


def test_to_decimal_is_exact() -> None:
    assert to_decimal("x", 0.1) == D("0.1")  # the float's shortest repr, not its binary expansion
    assert to_decimal("x", 3) == D(3)
    assert to_decimal("x", "2.50") == D("2.50")
    assert floor_to_step(D("0.839"), D("0.01")) == D("0.83")
    assert floor_to_step(D("0.0099"), D("0.01")) == 0


# -------------------------------------------------------------------------------------- properties

money = st.decimals(min_value=D(100), max_value=D(10**9), places=2, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=D("0.01"), max_value=D(100_000), places=2, allow_nan=False, allow_infinity=False)
atr = st.decimals(min_value=D("0.00001"), max_value=D(100), places=5, allow_nan=False, allow_infinity=False)
stops = st.decimals(min_value=D("0.1"), max_value=D(5000), places=1, allow_nan=False, allow_infinity=False)
pip_values = st.decimals(min_value=D("0.001"), max_value=D(1000), places=3, allow_nan=False, allow_infinity=False)
lot_shapes = st.sampled_from(
    [
        (D("0.01"), D("0.01"), D(100)),
        (D("0.001"), D("0.001"), D(100)),
        (D("0.1"), D("0.1"), D(50)),
        (D(1), D(1), D(1000)),
        (D("0.05"), D("0.01"), D("0.5")),
    ]
)
configs = st.builds(
    lambda name, lots, allow_zero: msgspec.structs.replace(
        PRESETS[name].with_lots(*lots), allow_zero_position=allow_zero
    ),
    st.sampled_from(sorted(PRESETS)),
    lot_shapes,
    st.booleans(),
)
requests = st.fixed_dictionaries(
    {
        "account_balance": money,
        "win_rate": st.floats(min_value=0.01, max_value=1.0),
        "avg_win": positive,
        "avg_loss": positive,
        "current_atr": atr | st.just(D(0)),
        "average_atr": atr,
        "pip_value": pip_values,
        "regime_quality": st.floats(min_value=0.0, max_value=1.0),
        "commission_per_lot": st.decimals(min_value=D(0), max_value=D(50), places=2),
        "spread_pips": st.decimals(min_value=D(0), max_value=D(5), places=1),
        "trade_count": st.none() | st.integers(min_value=0, max_value=200),
    }
)


@settings(max_examples=400, deadline=None)
@given(cfg=configs, req=requests, stop=stops)
def test_the_cap_is_never_exceeded_and_lots_are_whole_steps(
    cfg: EnhancedKellyConfig, req: dict[str, object], stop: Decimal
) -> None:
    r = EnhancedKellyCalculator(cfg).calculate(stop_loss_pips=stop, **req)  # type: ignore[arg-type]
    balance, pip_value = req["account_balance"], req["pip_value"]
    assert 0 <= r.kelly_f <= cfg.max_risk_pct
    assert r.position_size * stop * pip_value <= balance * cfg.max_risk_pct  # type: ignore[operator]
    assert 0 <= r.position_size <= cfg.max_lot_size
    assert r.position_size % cfg.lot_step == 0
    assert r.position_size == 0 or r.position_size >= cfg.min_lot_size
    assert (r.position_size == 0) == (r.status in ("zero", "fee_blocked", "min_lot_over_cap"))


@settings(max_examples=300, deadline=None)
@given(cfg=configs, req=requests, stop=stops, wider=st.decimals(min_value=D(0), max_value=D(1000), places=1))
def test_a_wider_stop_never_gives_more_lots(
    cfg: EnhancedKellyConfig, req: dict[str, object], stop: Decimal, wider: Decimal
) -> None:
    engine = EnhancedKellyCalculator(cfg)
    near = engine.calculate(stop_loss_pips=stop, **req)  # type: ignore[arg-type]
    far = engine.calculate(stop_loss_pips=stop + wider, **req)  # type: ignore[arg-type]
    assert far.position_size <= near.position_size
