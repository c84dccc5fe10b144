"""The Enhanced Kelly engine: a risk fraction from a strategy's own statistics, then lots.

Three layers of protection over the Kelly fraction ``f* = ((R + 1)*p - 1) / R``:

1. a fraction of full Kelly (``kelly_fraction``, half Kelly by default);
2. a hard cap on the risk per trade (``max_risk_pct``, 2 % by default);
3. a volatility and regime adjustment: ``* regime_quality * (average_atr / current_atr)``, an extra ``/ ratio``
   above ``high_vol_threshold`` and ``* low_vol_boost`` below ``low_vol_threshold``.

The hard cap holds after every layer (the seed only re-applied it after the low-volatility boost, so a calm but
normal market could exceed it), fees equal to the average win block the trade instead of dividing by zero, and
lots are floored to the lot step so the money at risk never rounds up past the cap.

Everything that multiplies money is ``Decimal``; statistics given as floats are converted through their
shortest repr (``0.55`` becomes ``Decimal("0.55")``, not its binary expansion). Every inexact multiplication or
division rounds down (``FLOOR``), so a rounding error can only ever shrink a position.
"""

from __future__ import annotations

import functools
from decimal import ROUND_FLOOR, Context, Decimal
from typing import Any, Final

import msgspec

#: All money and fraction arithmetic goes through this context's methods: 28 significant digits, rounding down,
#: so no inexact step can push a fraction, an amount or a lot count above what the exact math gives, whatever
#: the caller's own context. (Audit lines are formatted in the caller's context: displayed figures round
#: normally.)
FLOOR: Final = Context(prec=28, rounding=ROUND_FLOOR)
_mul = FLOOR.multiply
_div = FLOOR.divide
_add = FLOOR.add
_sub = FLOOR.subtract

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
HUNDRED: Final = Decimal(100)

# Statuses of a sizing (KellyResult.status and PositionSizingResult.status).
CALCULATED: Final = "calculated"  # a positive size from the Kelly layers
FALLBACK: Final = "fallback"  # too few trades for Kelly: fallback_risk_pct instead of layers 1-2
ZERO_STATUS: Final = "zero"  # no trade: negative expectancy, a zero fraction, or below the minimum lot by choice
FEE_BLOCKED: Final = "fee_blocked"  # fees per lot eat the whole average win
MIN_LOT_OVER_CAP: Final = "min_lot_over_cap"  # below the minimum lot, and the minimum lot would break the cap


Number = Decimal | int | float | str


@functools.lru_cache(maxsize=4096)
def _float_decimal(value: float) -> Decimal:
    # Statistics repeat (a strategy sends the same win rate for many intents): remember the conversions.
    return Decimal(repr(value))


def to_decimal(name: str, value: Number) -> Decimal:
    """``value`` as an exact Decimal; floats through their shortest repr. Non-finite values are refused."""
    if value.__class__ is Decimal:  # the common case first: this runs eleven times per sizing
        if value.is_finite():  # type: ignore[union-attr]
            return value  # type: ignore[return-value]
        raise ValueError(f"{name} must be a finite number, got {value}")
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    elif isinstance(value, float):
        out = _float_decimal(value)
    elif isinstance(value, int | str):
        try:
            out = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    else:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not out.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value}")
    return out


# Audit lines interpolate Decimals with ``!s``: str() is about three times faster than format() with an empty
# spec, and these lines are built on every order's path (the sizing budget is 20 microseconds).


def pct(fraction: Decimal) -> str:
    """0.0166 -> '1.66%' (display only)."""
    return f"{fraction * HUNDRED:.2f}%"


# ------------------------------------------------------------------------------------------ config


class EnhancedKellyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters of the engine. Fractions are Decimal because they multiply money."""

    # Layer 1: the share of full Kelly traded (half Kelly keeps most of the growth for far less drawdown).
    kelly_fraction: Decimal = Decimal("0.50")
    # Layer 2: the hard cap on the risk of one trade, as a fraction of the balance.
    max_risk_pct: Decimal = Decimal("0.02")
    # Layer 3: ATR ratio (current / average) bands.
    high_vol_threshold: Decimal = Decimal("1.3")
    low_vol_threshold: Decimal = Decimal("0.7")
    low_vol_boost: Decimal = Decimal("1.2")
    # Data requirements: fewer trades than this and the statistics are not trusted (fallback_risk_pct is used).
    min_trade_history: int = 30
    atr_period: int = 20  # informational: the period the strategy's average ATR should use
    confidence_interval: float = 0.95  # informational (the seed reserves it for significance tests)
    # Broker constraints; the sizer replaces them with the instrument's own.
    min_lot_size: Decimal = Decimal("0.01")
    lot_step: Decimal = Decimal("0.01")
    max_lot_size: Decimal = Decimal("100")
    # Below the minimum lot: True trades nothing; False trades the minimum lot if its risk is within the cap.
    allow_zero_position: bool = False
    fallback_risk_pct: Decimal = Decimal("0.02")
    # Portfolio integration (for the portfolio scaler; the per-trade engine does not use them).
    enable_portfolio_scaling: bool = True
    max_portfolio_risk_pct: Decimal = Decimal("0.03")

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """The first thing wrong with this configuration, or None."""
        if not ZERO < self.kelly_fraction <= ONE:
            return f"kelly_fraction must be between 0 and 1, got {self.kelly_fraction}"
        if not ZERO < self.max_risk_pct <= Decimal("0.10"):
            return f"max_risk_pct must be between 0 and 10%, got {self.max_risk_pct}"
        if self.high_vol_threshold <= self.low_vol_threshold:
            return (
                f"high_vol_threshold must be > low_vol_threshold, got {self.high_vol_threshold} <= "
                f"{self.low_vol_threshold}"
            )
        if self.low_vol_threshold <= ZERO:
            return f"low_vol_threshold must be positive, got {self.low_vol_threshold}"
        if self.low_vol_boost <= ZERO:
            return f"low_vol_boost must be positive, got {self.low_vol_boost}"
        if self.min_trade_history < 10:
            return f"min_trade_history should be at least 10, got {self.min_trade_history}"
        if self.lot_step <= ZERO:
            return f"lot_step must be positive, got {self.lot_step}"
        if not ZERO < self.min_lot_size <= self.max_lot_size:
            return f"min_lot_size must be positive and at most max_lot_size, got {self.min_lot_size}"
        for name in ("min_lot_size", "max_lot_size"):
            if getattr(self, name) % self.lot_step:
                return f"{name} must be a multiple of lot_step {self.lot_step}, got {getattr(self, name)}"
        if not ZERO < self.fallback_risk_pct <= Decimal("0.10"):
            return f"fallback_risk_pct must be between 0 and 10%, got {self.fallback_risk_pct}"
        if not ZERO < self.max_portfolio_risk_pct <= ONE:
            return f"max_portfolio_risk_pct must be between 0 and 100%, got {self.max_portfolio_risk_pct}"
        return None

    def validate(self) -> bool:
        """Raise ValueError if invalid (construction already checks; kept for callers of the seed's API)."""
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        return True

    def with_lots(self, min_lot: Decimal, lot_step: Decimal, max_lot: Decimal) -> EnhancedKellyConfig:
        """This configuration with an instrument's lot constraints."""
        return msgspec.structs.replace(self, min_lot_size=min_lot, lot_step=lot_step, max_lot_size=max_lot)


D = Decimal

#: Named presets (the seed's prop-firm settings).
PRESETS: Final[dict[str, EnhancedKellyConfig]] = {
    "default": EnhancedKellyConfig(),
    # FTMO challenge: very conservative, skip a trade rather than force the minimum lot.
    "ftmo_challenge": EnhancedKellyConfig(
        kelly_fraction=D("0.40"),
        max_risk_pct=D("0.01"),
        high_vol_threshold=D("1.2"),
        low_vol_boost=D("1.1"),
        allow_zero_position=True,
    ),
    "ftmo_funded": EnhancedKellyConfig(
        kelly_fraction=D("0.55"), max_risk_pct=D("0.015"), high_vol_threshold=D("1.3"), low_vol_boost=D("1.2")
    ),
    "the5ers": EnhancedKellyConfig(
        kelly_fraction=D("0.50"),
        max_risk_pct=D("0.02"),
        high_vol_threshold=D("1.3"),
        max_portfolio_risk_pct=D("0.04"),
    ),
    "personal_aggressive": EnhancedKellyConfig(
        kelly_fraction=D("0.60"), max_risk_pct=D("0.025"), high_vol_threshold=D("1.5"), low_vol_boost=D("1.3")
    ),
    "paper_trading": EnhancedKellyConfig(
        kelly_fraction=D("0.70"), max_risk_pct=D("0.03"), high_vol_threshold=D("1.5"), min_trade_history=10
    ),
}


def preset(name: str) -> EnhancedKellyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown Kelly preset {name!r}; known: {', '.join(PRESETS)}") from None


# ------------------------------------------------------------------------------------------ result


class KellyResult(msgspec.Struct, frozen=True, kw_only=True):
    """The engine's answer with every step that produced it.

    ``risk_amount`` is the risk budget (balance * kelly_f); the money actually at risk is
    ``position_size * stop * pip value``, at most the budget except when the minimum lot was taken (then at
    most the hard cap). ``base_kelly_f`` is None when the fee kill switch fired before it was computed.
    """

    position_size: Decimal
    kelly_f: Decimal
    base_kelly_f: Decimal | None
    risk_amount: Decimal
    adjustments: list[str]
    status: str = CALCULATED

    @property
    def is_zero(self) -> bool:
        return self.position_size == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "position_size": self.position_size,
            "kelly_fraction": self.kelly_f,
            "base_kelly": self.base_kelly_f,
            "risk_amount": self.risk_amount,
            "adjustments": list(self.adjustments),
            "status": self.status,
        }


# --------------------------------------------------------------------------------------------- lots


def floor_to_step(lots: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``lots`` (lots >= 0)."""
    return _mul(FLOOR.divide_int(lots, step), step)


def lots_for_risk(
    risk_budget: Decimal,
    risk_per_lot: Decimal,
    cap_amount: Decimal,
    config: EnhancedKellyConfig,
    steps: list[str],
) -> tuple[Decimal, str]:
    """Lots that risk at most ``risk_budget`` (and never more than ``cap_amount``), with the status.

    ``risk_per_lot`` is the loss of one lot at the stop (stop pips * pip value per lot). Floors to the lot step,
    clamps to the maximum lot; below the minimum lot takes the minimum lot only if its risk is within the cap.
    """
    raw = _div(risk_budget, risk_per_lot)
    steps.append(f"Raw position = {risk_budget:.2f} / {risk_per_lot:.2f} risk per lot at the stop = {raw:.4f} lots")
    if raw > config.max_lot_size:
        steps.append(f"Clamped to the maximum lot {config.max_lot_size!s}")
        raw = config.max_lot_size
    lots = floor_to_step(raw, config.lot_step)
    steps.append(f"Rounded position = {lots!s} lots (floored to the lot step {config.lot_step!s})")
    status = CALCULATED
    if lots < config.min_lot_size:
        min_risk = _mul(config.min_lot_size, risk_per_lot)
        if risk_budget <= 0:
            steps.append("Nothing to risk: no trade")
            lots, status = ZERO, ZERO_STATUS
        elif config.allow_zero_position:
            steps.append(f"Below the minimum lot {config.min_lot_size!s} and allow_zero_position: no trade")
            lots, status = ZERO, ZERO_STATUS
        elif min_risk <= cap_amount:
            steps.append(
                f"Below the minimum lot: the minimum lot {config.min_lot_size!s} risks {min_risk:.2f}, "
                f"within the cap {cap_amount:.2f}: {config.min_lot_size!s} lots"
            )
            lots = config.min_lot_size
        else:
            steps.append(
                f"Below the minimum lot: the minimum lot {config.min_lot_size!s} would risk {min_risk:.2f}, "
                f"over the cap {cap_amount:.2f}: no trade"
            )
            lots, status = ZERO, MIN_LOT_OVER_CAP
    # Defensive: whatever the inputs, the money at risk must never exceed the cap.
    while lots > 0 and _mul(lots, risk_per_lot) > cap_amount:
        lots = _sub(lots, config.lot_step)
        steps.append(f"Reduced by one lot step to stay within the cap: {lots!s} lots")
    return lots, status


# ------------------------------------------------------------------------------------------- engine


class EnhancedKellyCalculator:
    """Position sizes from win rate, payoff and volatility, never above the hard cap."""

    def __init__(self, config: EnhancedKellyConfig | None = None) -> None:
        self.config = config or EnhancedKellyConfig()
        self.config.validate()
        self._cap_pct = pct(self.config.max_risk_pct)  # formatted once: it appears in most audits

    def calculate(
        self,
        account_balance: Number,
        win_rate: Number,
        avg_win: Number,
        avg_loss: Number,
        current_atr: Number,
        average_atr: Number,
        stop_loss_pips: Number,
        pip_value: Number = 10,
        regime_quality: Number = 1.0,
        commission_per_lot: Number = 0,
        spread_pips: Number = 0,
        *,
        trade_count: int | None = None,
    ) -> KellyResult:
        """Size one trade. Raises ValueError (with the reason) on invalid inputs.

        ``pip_value`` is the value of one pip for one lot in the account currency; ``avg_win``, ``avg_loss``
        and ``commission_per_lot`` are in the account currency too. ``trade_count`` (optional) is the number
        of trades behind the statistics: below ``min_trade_history`` the engine uses ``fallback_risk_pct``
        instead of layers 1 and 2.
        """
        cfg = self.config
        balance = to_decimal("account_balance", account_balance)
        p = to_decimal("win_rate", win_rate)
        win = to_decimal("avg_win", avg_win)
        loss = to_decimal("avg_loss", avg_loss)
        cur_atr = to_decimal("current_atr", current_atr)
        avg_atr = to_decimal("average_atr", average_atr)
        stop = to_decimal("stop_loss_pips", stop_loss_pips)
        pv = to_decimal("pip_value", pip_value)
        quality = to_decimal("regime_quality", regime_quality)
        commission = to_decimal("commission_per_lot", commission_per_lot)
        spread = to_decimal("spread_pips", spread_pips)
        if not ZERO < p <= ONE:
            raise ValueError(f"win_rate must be between 0 (exclusive) and 1 (inclusive), got {p}")
        for name, value in (
            ("avg_win", win),
            ("avg_loss", loss),
            ("stop_loss_pips", stop),
            ("average_atr", avg_atr),
            ("account_balance", balance),
            ("pip_value", pv),
        ):
            if value <= ZERO:
                raise ValueError(f"{name} must be positive, got {value}")
        if cur_atr < ZERO:
            raise ValueError(f"current_atr must be zero or positive, got {cur_atr}")
        if not ZERO <= quality <= ONE:
            raise ValueError(f"regime_quality must be between 0 and 1, got {quality}")
        if commission < ZERO:
            raise ValueError(f"commission_per_lot must be zero or positive, got {commission}")
        if spread < ZERO:
            raise ValueError(f"spread_pips must be zero or positive, got {spread}")
        if trade_count is not None and trade_count < 0:
            raise ValueError(f"trade_count must be zero or positive, got {trade_count}")

        # The inputs themselves appear in the lines below where they are used; formatting costs microseconds.
        steps = ["Inputs valid: win rate in (0, 1], payoffs, stop, pip value, balance and ATRs positive"]
        cap = cfg.max_risk_pct
        cap_amount = _mul(balance, cap)
        r = _div(win, loss)
        steps.append(f"R:R ratio = {win!s} / {loss!s} = {r:.4f}")
        fee = _add(commission, _mul(spread, pv))
        win_net = _sub(win, fee)
        loss_net = _add(loss, fee)
        if fee:
            r = _div(win_net, loss_net)
            steps.append(
                f"Fee per lot = {fee:.2f} (commission {commission!s} + spread {spread!s} pips * {pv!s}); "
                f"net avg win {win_net:.2f}, net avg loss {loss_net:.2f}, fee-adjusted R:R = {r:.4f}"
            )
        else:
            steps.append("Fee per lot = 0 (no commission, no spread): R:R unchanged")
        if fee >= win:
            # Checked before base Kelly: with fee == avg_win the net ratio is 0 and Kelly would divide by it.
            steps.append(f"FEE KILL SWITCH: fees per lot {fee:.2f} >= average win {win:.2f}: no trade")
            return KellyResult(
                position_size=ZERO, kelly_f=ZERO, base_kelly_f=None, risk_amount=ZERO, adjustments=steps,
                status=FEE_BLOCKED,
            )  # fmt: skip
        base = _div(_sub(_mul(_add(r, ONE), p), ONE), r)  # ((R + 1) * p - 1) / R
        steps.append(f"Base Kelly = ((R + 1) * {p!s} - 1) / R = {base:.4f} ({pct(base)})")
        if base <= ZERO:
            steps.append("Negative expectancy (base Kelly <= 0): no edge, no trade")
            return KellyResult(
                position_size=ZERO, kelly_f=ZERO, base_kelly_f=base, risk_amount=ZERO, adjustments=steps,
                status=ZERO_STATUS,
            )  # fmt: skip

        status = CALCULATED
        if trade_count is not None and trade_count < cfg.min_trade_history:
            f = min(cfg.fallback_risk_pct, cap)
            status = FALLBACK
            steps.append(
                f"Only {trade_count!s} trades (< {cfg.min_trade_history!s}): Kelly statistics not trusted, "
                f"fallback risk {pct(f)} instead of layers 1-2"
            )
        else:
            f = _mul(base, cfg.kelly_fraction)
            steps.append(f"Layer 1 (* {cfg.kelly_fraction!s}): {f:.4f}")
            if f > cap:
                f = cap
                steps.append(f"Layer 2 (capped at {self._cap_pct}): {f:.4f}")
            else:
                steps.append(f"Layer 2 (within the {self._cap_pct} cap): {f:.4f}")

        before = f
        if cur_atr == ZERO:
            ratio = ZERO
            vol_scalar = ONE  # no volatility reading: no volatility scaling
        else:
            ratio = _div(cur_atr, avg_atr)
            vol_scalar = _div(avg_atr, cur_atr)
        f = _mul(_mul(f, quality), vol_scalar)
        steps.append(
            f"Layer 3: ATR ratio {ratio:.4f} ({cur_atr!s} / {avg_atr!s}), regime quality {quality!s}, "
            f"volatility scalar {vol_scalar:.4f}: {before:.4f} -> {f:.4f}"
        )
        if ratio > cfg.high_vol_threshold:
            f = _div(f, ratio)
            steps.append(f"Layer 3 high volatility (ratio > {cfg.high_vol_threshold!s}): / {ratio:.4f} = {f:.4f}")
        elif ratio < cfg.low_vol_threshold:
            f = _mul(f, cfg.low_vol_boost)
            steps.append(
                f"Layer 3 low volatility (ratio < {cfg.low_vol_threshold!s}): * {cfg.low_vol_boost!s} = {f:.4f}"
            )
        if f > cap:
            # The seed re-capped only after the low-volatility boost; a ratio inside the normal band but
            # below 1 scales f up too, so the cap is applied after every branch.
            f = cap
            steps.append(f"Layer 3 capped at {self._cap_pct}: {f:.4f}")
        if f <= ZERO:
            steps.append("Kelly fraction is 0 after layer 3 (regime quality 0): no trade")
            return KellyResult(
                position_size=ZERO, kelly_f=ZERO, base_kelly_f=base, risk_amount=ZERO, adjustments=steps,
                status=ZERO_STATUS,
            )  # fmt: skip

        risk = _mul(balance, f)
        steps.append(f"Risk amount = {balance!s} * {f:.6f} = {risk:.2f} (cap {cap_amount:.2f})")
        lots, lot_status = lots_for_risk(risk, _mul(stop, pv), cap_amount, cfg, steps)
        if lot_status != CALCULATED:
            status = lot_status
        return KellyResult(
            position_size=lots, kelly_f=f, base_kelly_f=base, risk_amount=risk, adjustments=steps, status=status
        )


def enhanced_kelly_position_size(
    account_balance: Number,
    win_rate: Number,
    avg_win: Number,
    avg_loss: Number,
    current_atr: Number,
    average_atr: Number,
    stop_loss_pips: Number,
    pip_value: Number = 10,
    config: EnhancedKellyConfig | None = None,
    regime_quality: Number = 1.0,
) -> Decimal:
    """Lots only (the seed's convenience function)."""
    return (
        EnhancedKellyCalculator(config)
        .calculate(
            account_balance, win_rate, avg_win, avg_loss, current_atr, average_atr, stop_loss_pips, pip_value,
            regime_quality,
        )
        .position_size
    )  # fmt: skip
