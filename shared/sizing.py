"""Turning an intent into a quantity (walking-skeleton scope: Fixed sizing, request validation).

Kelly and RiskPct requests are refused with a clear reason until the Enhanced Kelly engine lands.
"""

from __future__ import annotations

from decimal import Decimal

from ordermesh.wire import (
    Fixed,
    Intent,
    IntentRejected,
    OrderRequest,
    OrderType,
    PositionSizingResult,
    RejectCategory,
    TimeInForce,
)


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


def reject(intent: Intent, category: RejectCategory, reason: str, audit: PositionSizingResult | None = None):
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


def size_intent(intent: Intent, account_balance: Decimal) -> OrderRequest | IntentRejected:
    """Size ``intent``: an OrderRequest with its audit, or an IntentRejected with the reason."""
    problem = validate_intent(intent)
    if problem:
        return reject(intent, RejectCategory.INVALID, problem)
    sizing = intent.sizing
    if isinstance(sizing, Fixed):
        qty = sizing.qty
        if not qty.is_finite() or qty <= 0:
            return reject(intent, RejectCategory.SIZING, f"fixed quantity must be positive, got {qty}")
        audit = PositionSizingResult(
            method="fixed",
            status="ok",
            account_balance=account_balance,
            risk_amount=Decimal(0),
            lot_size=qty,
            calculation_steps=[f"fixed size requested by the strategy: {qty}"],
        )
        return OrderRequest(intent=intent, quantity=qty, sizing_audit=audit)
    return reject(intent, RejectCategory.SIZING, f"{type(sizing).__name__} sizing is not available yet")
