"""Turning an intent into a quantity: Fixed, Kelly (the Enhanced Kelly engine) and RiskPct sizing.

Pure: the sizer service gathers the account (balance, free margin, currency), the instrument spec (file plus
what the gateway reported) and prices, and hands them to :class:`Sizer`. The answer is an ``OrderRequest``
carrying a :class:`~ordermesh.contract.wire.PositionSizingResult` audit, or an ``IntentRejected`` with the category,
``reason`` (``CATEGORY: status: detail``) and, once sizing has started, the audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, DecimalException
from typing import Final

import msgspec

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
    TimeInForce,
)
from ordermesh.sizing.instruments import (
    InstrumentSpec,
    PriceBook,
    PriceOf,
    margin_per_lot,
    pip_value_per_lot,
    price_lookup,
)
from ordermesh.sizing.kelly import (
    FLOOR,
    EnhancedKellyCalculator,
    EnhancedKellyConfig,
    lots_for_risk,
    pct,
)

ZERO: Final = Decimal(0)

# Sizer-level statuses (the engine's own are in ordermesh.sizing.kelly).
OK: Final = "ok"  # a fixed size
INVALID: Final = "invalid"
UNKNOWN_INSTRUMENT: Final = "unknown_instrument"
NO_PRICE: Final = "no_price"
INSUFFICIENT_MARGIN: Final = "insufficient_margin"
#: The intent's figures make the arithmetic fail (a decimal overflow, a figure beyond the wire's bounds).
UNPROCESSABLE: Final = "unprocessable"

METHODS: Final = {Fixed: "fixed", Kelly: "kelly", RiskPct: "risk_pct"}

Prices = Mapping[str, Decimal] | PriceBook


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """What the sizer knows of an account: the keeper's AccountState, or the configured fallback."""

    balance: Decimal
    free_margin: Decimal | None = None
    currency: str = "USD"
    source: str = "keeper state"  # where the figures come from, for the audit


def validate_intent(intent: Intent) -> str | None:
    """The reason an intent cannot be traded as written, or None."""
    if not intent.symbol or not intent.account or not intent.strategy_id or not intent.intent_id:
        return "intent_id, strategy_id, account and symbol are required"
    needs_limit = intent.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = intent.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_limit and intent.limit_price is None:
        return f"a {intent.order_type.value} order needs limit_price"
    if needs_stop and intent.stop_price is None:
        return f"a {intent.order_type.value} order needs stop_price"
    for name in ("limit_price", "stop_price", "stop_loss", "take_profit", "reference_price"):
        value = getattr(intent, name)
        if value is not None and (not value.is_finite() or value <= 0):
            return f"{name} must be a positive number, got {value}"
    if intent.time_in_force is TimeInForce.GTD and intent.expire_at_ns is None:
        return "a GTD order needs expire_at_ns"
    return None


def reject(
    intent: Intent, category: RejectCategory, reason: str, audit: PositionSizingResult | None = None
) -> IntentRejected:
    return IntentRejected(
        intent_id=intent.intent_id,
        strategy_id=intent.strategy_id,
        account=intent.account,
        symbol=intent.symbol,
        category=category,
        reason=f"{category.value}: {reason}",
        intent_ts_ns=intent.ts_ns,
        sizing_audit=audit,
    )


def describe(exc: Exception) -> str:
    """A refusal's detail for an arithmetic failure on a message's figures (one line, bounded)."""
    if isinstance(exc, DecimalException):
        return f"decimal {type(exc).__name__.lower()}: a figure is too large or too small to compute with"
    return str(exc)[:300]


def outcome_labels(intent: Intent, outcome: OrderRequest | IntentRejected) -> tuple[str, str]:
    """(method, status) of a sizing outcome, for metrics."""
    method = METHODS.get(type(intent.sizing), "unknown")
    audit = outcome.sizing_audit
    return method, audit.status if audit is not None else INVALID


def _own_price(intent: Intent) -> Decimal | None:
    """The price the order itself names: its limit, its stop, or the quote the strategy decided on."""
    return intent.limit_price or intent.stop_price or intent.reference_price


class Sizer:
    """Sizes intents against a Kelly configuration and instrument specs. Stateless apart from caches."""

    def __init__(
        self, kelly: EnhancedKellyConfig | None = None, instruments: Mapping[str, InstrumentSpec] | None = None
    ) -> None:
        self.kelly = kelly or EnhancedKellyConfig()
        self.instruments = dict(instruments or {})
        self._calculators: dict[tuple[Decimal, Decimal, Decimal], EnhancedKellyCalculator] = {}
        self._descriptions: dict[tuple[str, InstrumentSpec], str] = {}
        self._pip_values: dict[tuple[InstrumentSpec, str], tuple[Decimal, str]] = {}

    def calculator(self, spec: InstrumentSpec) -> EnhancedKellyCalculator:
        """The engine with the instrument's lot constraints (they replace the preset's)."""
        key = (spec.min_lot, spec.lot_step, spec.max_lot)
        calc = self._calculators.get(key)
        if calc is None:
            calc = self._calculators[key] = EnhancedKellyCalculator(self.kelly.with_lots(*key))
        return calc

    # Audit lines and figures that depend only on the spec are worth caching: the sizing budget is microseconds.

    def _describe(self, symbol: str, spec: InstrumentSpec) -> str:
        key = (symbol, spec)
        line = self._descriptions.get(key)
        if line is None:
            line = self._descriptions[key] = spec.describe(symbol)
        return line

    def _pip_value(self, spec: InstrumentSpec, currency: str, price_of: PriceOf) -> tuple[Decimal, str]:
        if spec.quote_currency != currency:
            return pip_value_per_lot(spec, currency, price_of)  # depends on a price: never cached
        key = (spec, currency)
        found = self._pip_values.get(key)
        if found is None:
            found = self._pip_values[key] = pip_value_per_lot(spec, currency, price_of)
        return found

    def size(
        self,
        intent: Intent,
        account: AccountView,
        *,
        prices: Prices | None = None,
        instrument: InstrumentSpec | None = None,
    ) -> OrderRequest | IntentRejected:
        """Size ``intent``: an OrderRequest with its audit, or an IntentRejected with the reason.

        ``instrument`` is the spec to use (e.g. the file's merged with the gateway's report); by default the
        one known for the symbol. Never raises on the intent's values: figures the arithmetic cannot handle (a
        stop of 1e-999999 pips overflows a division; a quantity whose margin exceeds 1e15) are an INVALID
        refusal with the status ``unprocessable``.
        """
        try:
            return self._size(intent, account, prices, instrument)
        except (ArithmeticError, ValueError) as exc:
            return reject(intent, RejectCategory.INVALID, f"{UNPROCESSABLE}: cannot size this intent: {describe(exc)}")

    def _size(
        self, intent: Intent, account: AccountView, prices: Prices | None, instrument: InstrumentSpec | None
    ) -> OrderRequest | IntentRejected:
        problem = validate_intent(intent)
        if problem:
            return reject(intent, RejectCategory.INVALID, problem)
        sizing = intent.sizing
        spec = instrument if instrument is not None else self.instruments.get(intent.symbol)
        price_of = price_lookup(prices, intent.symbol, _own_price(intent))
        if isinstance(sizing, Fixed):
            return self._fixed(intent, sizing, account, spec, price_of)
        return self._risk_based(intent, sizing, account, spec, price_of)

    # ------------------------------------------------------------------------------------ fixed

    def _fixed(
        self, intent: Intent, sizing: Fixed, account: AccountView, spec: InstrumentSpec | None, price_of: PriceOf
    ) -> OrderRequest | IntentRejected:
        qty = sizing.qty
        if not qty.is_finite() or qty <= 0:
            return reject(intent, RejectCategory.SIZING, f"fixed quantity must be positive, got {qty}")
        steps = [f"fixed size requested by the strategy: {qty!s}"]
        if spec is None:
            steps.append(f"no instrument spec for {intent.symbol}: margin not estimated")
            estimated = remaining = None
        else:
            estimated, remaining = self._margin(intent, qty, account, spec, price_of, steps)
        audit = PositionSizingResult(
            method="fixed",
            status=OK,
            account_balance=account.balance,
            risk_amount=ZERO,
            lot_size=qty,
            estimated_margin=estimated,
            remaining_margin=remaining,
            calculation_steps=steps,
            currency=account.currency,
            symbol=intent.symbol,
        )
        return self._order(intent, audit, account)

    # ------------------------------------------------------------------------------- kelly, risk

    def _risk_based(
        self,
        intent: Intent,
        sizing: Kelly | RiskPct,
        account: AccountView,
        spec: InstrumentSpec | None,
        price_of: PriceOf,
    ) -> OrderRequest | IntentRejected:
        method = METHODS[type(sizing)]
        balance = account.balance
        steps: list[str] = []

        def refuse(category: RejectCategory, status: str, detail: str, **audit_kw: object) -> IntentRejected:
            audit = PositionSizingResult(
                method=method,
                status=status,
                account_balance=balance,
                risk_amount=ZERO,
                stop_loss_pips=sizing.stop_loss_pips,
                lot_size=ZERO,
                calculation_steps=[*steps, detail],
                currency=account.currency,
                symbol=intent.symbol,
                **audit_kw,  # type: ignore[arg-type]
            )
            return reject(intent, category, f"{status}: {detail}", audit)

        stop = sizing.stop_loss_pips
        if not stop.is_finite() or stop <= 0:
            return refuse(RejectCategory.INVALID, INVALID, f"stop_loss_pips must be positive, got {stop}")
        if isinstance(sizing, RiskPct):
            r = sizing.risk_pct
            if not r.is_finite() or not 0 < r <= 1:
                return refuse(RejectCategory.INVALID, INVALID, f"risk_pct must be in (0, 1], got {r}")
        if balance < 100 or balance > Decimal("1e9"):
            too = "too low, minimum $100" if balance < 100 else "unrealistically high"
            return refuse(RejectCategory.INVALID, INVALID, f"account_balance ({balance}) {too}")
        if spec is None:
            return refuse(
                RejectCategory.INSTRUMENT,
                UNKNOWN_INSTRUMENT,
                f"no instrument spec for {intent.symbol} (neither in the instruments file nor reported by a gateway)",
            )
        steps.append(self._describe(intent.symbol, spec))
        try:
            pip_value, line = self._pip_value(spec, account.currency, price_of)
        except LookupError as exc:
            return refuse(RejectCategory.SIZING, NO_PRICE, f"pip value of {intent.symbol}: {exc}")
        steps.append(line)
        free = "unknown" if account.free_margin is None else f"{account.free_margin!s} {account.currency}"
        steps.append(f"Account balance {balance!s} {account.currency}, free margin {free} ({account.source})")

        calc = self.calculator(spec)
        cfg = calc.config
        cap_amount = FLOOR.multiply(balance, cfg.max_risk_pct)
        kelly_f = base_kelly_f = None
        if isinstance(sizing, Kelly):
            try:
                result = calc.calculate(
                    balance,
                    sizing.win_rate,
                    sizing.avg_win,
                    sizing.avg_loss,
                    sizing.current_atr,
                    sizing.average_atr,
                    stop,
                    pip_value,
                    sizing.regime_quality,
                    sizing.commission_per_lot,
                    sizing.spread_pips,
                    trade_count=sizing.trade_count,
                )
            except ValueError as exc:
                return refuse(RejectCategory.INVALID, INVALID, f"invalid Kelly request: {exc}", pip_value=pip_value)
            steps += result.adjustments
            lots, status, budget = result.position_size, result.status, result.risk_amount
            kelly_f, base_kelly_f = result.kelly_f, result.base_kelly_f
        else:
            f = min(sizing.risk_pct, cfg.max_risk_pct)
            if sizing.risk_pct > cfg.max_risk_pct:
                steps.append(f"Risk {pct(sizing.risk_pct)} requested, capped at the {pct(f)} hard cap")
            else:
                steps.append(f"Risk {pct(f)} requested (cap {pct(cfg.max_risk_pct)})")
            budget = FLOOR.multiply(balance, f)
            steps.append(f"Risk amount = {balance!s} * {f!s} = {budget:.2f} (cap {cap_amount:.2f})")
            lots, status = lots_for_risk(budget, FLOOR.multiply(stop, pip_value), cap_amount, cfg, steps)

        at_risk = FLOOR.multiply(lots, FLOOR.multiply(stop, pip_value))  # the product lots_for_risk capped
        estimated = remaining = None
        if lots:
            estimated, remaining = self._margin(intent, lots, account, spec, price_of, steps)
        audit = PositionSizingResult(
            method=method,
            status=status,
            account_balance=balance,
            risk_amount=at_risk,
            stop_loss_pips=stop,
            pip_value=pip_value,
            lot_size=lots,
            estimated_margin=estimated,
            remaining_margin=remaining,
            calculation_steps=steps,
            currency=account.currency,
            symbol=intent.symbol,
            risk_budget=budget,
            max_risk_amount=cap_amount,
            kelly_f=kelly_f,
            base_kelly_f=base_kelly_f,
        )
        if not lots:
            return reject(intent, RejectCategory.SIZING, f"{status}: {steps[-1]}", audit)
        return self._order(intent, audit, account)

    # ----------------------------------------------------------------------------------- margin

    def _margin(
        self, intent: Intent, lots: Decimal, account: AccountView, spec: InstrumentSpec, price_of: PriceOf,
        steps: list[str],
    ) -> tuple[Decimal | None, Decimal | None]:  # fmt: skip
        """(estimated margin, remaining free margin) of ``lots``; None where unknown. Appends the audit lines."""
        try:
            per_lot, line = margin_per_lot(spec, account.currency, price_of(intent.symbol), price_of)
        except LookupError as exc:
            steps.append(f"margin not estimated: {exc}")
            return None, None
        estimated = FLOOR.multiply(lots, per_lot)
        if account.free_margin is None:
            steps.append(f"{line}; estimated margin * {lots!s} lots = {estimated:.2f}; free margin unknown")
            return estimated, None
        remaining = max(ZERO, FLOOR.subtract(account.free_margin, estimated))
        steps.append(
            f"{line}; estimated margin * {lots!s} lots = {estimated:.2f}; remaining margin "
            f"{account.free_margin!s} - {estimated:.2f} -> {remaining:.2f}"
        )
        return estimated, remaining

    def _order(
        self, intent: Intent, audit: PositionSizingResult, account: AccountView
    ) -> OrderRequest | IntentRejected:
        """The order, unless its margin does not fit (a reduce-only order releases margin: not checked)."""
        if not audit.validate_margin_sufficiency():
            if intent.reduce_only:
                audit.calculation_steps.append("reduce-only: releases margin, not checked")
            else:
                detail = (
                    f"estimated margin {audit.estimated_margin:.2f} leaves no free margin "
                    f"(free {account.free_margin:.2f})"
                )
                audit = msgspec.structs.replace(
                    audit, status=INSUFFICIENT_MARGIN, calculation_steps=[*audit.calculation_steps, detail]
                )
                return reject(intent, RejectCategory.INSUFFICIENT_FUNDS, f"{INSUFFICIENT_MARGIN}: {detail}", audit)
        return _validated_order(intent, audit)


def _validated_order(intent: Intent, audit: PositionSizingResult) -> OrderRequest | IntentRejected:
    # Risk-based audits must pass the seed's rules (the checks above make a failure our own bug, hence
    # INTERNAL); a fixed size carries no stop and may name any balance.
    problems = audit.problems() if audit.method != "fixed" else []
    if problems:
        return reject(
            intent, RejectCategory.INTERNAL, f"{INVALID}: audit failed validation: {'; '.join(problems)}", audit
        )
    return OrderRequest(intent=intent, quantity=audit.lot_size, sizing_audit=audit)


_DEFAULT = Sizer()


def size_intent(
    intent: Intent,
    account_balance: Decimal,
    *,
    free_margin: Decimal | None = None,
    currency: str = "USD",
    sizer: Sizer | None = None,
    prices: Prices | None = None,
    instrument: InstrumentSpec | None = None,
) -> OrderRequest | IntentRejected:
    """Size ``intent`` for an account with ``account_balance`` (convenience over :meth:`Sizer.size`)."""
    account = AccountView(balance=account_balance, free_margin=free_margin, currency=currency)
    return (sizer or _DEFAULT).size(intent, account, prices=prices, instrument=instrument)
