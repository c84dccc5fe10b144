"""The MQL5-JSON-API expert advisor's numbers and codes: MT5 trade retcodes (MqlTradeResult.retcode) and the
errors they mean to us, the action types that deal at once, and how the EA writes numbers in its JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from ordermesh.brokers.model import (
    BrokerConnectionError,
    BrokerError,
    InsufficientFundsError,
    ModificationError,
    OrderError,
)

DONE, PLACED, DONE_PARTIAL = 10009, 10008, 10010
SUCCESS = (DONE, PLACED, DONE_PARTIAL)
PRICE_RETRY = (10004, 10020, 10021)  # requote, price changed, price off: one bounded retry
TOO_MANY = 10024
CONNECTION = (10031, 10012)  # connection, timeout: unknown outcome
INVALID = (10013, 10014, 10015, 10016, 10022, 10030, 10035, 10038)
CLOSED = (10017, 10018)  # trade disabled, market closed
NAMES = {
    10004: "REQUOTE", 10006: "REJECT", 10007: "CANCEL", 10011: "ERROR", 10012: "TIMEOUT", 10013: "INVALID",
    10014: "INVALID_VOLUME", 10015: "INVALID_PRICE", 10016: "INVALID_STOPS", 10017: "TRADE_DISABLED",
    10018: "MARKET_CLOSED", 10019: "NO_MONEY", 10020: "PRICE_CHANGED", 10021: "PRICE_OFF",
    10022: "INVALID_EXPIRATION", 10024: "TOO_MANY_REQUESTS", 10025: "NO_CHANGES", 10030: "INVALID_FILL",
    10031: "CONNECTION", 10035: "INVALID_ORDER", 10038: "INVALID_CLOSE_VOLUME",
}  # fmt: skip
_json = msgspec.json.Decoder(float_hook=Decimal)  # the EA's 5-decimal doubles, exactly as written
ZERO = Decimal(0)
MARKET = ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL")
PENDING = ("ORDER_TYPE_BUY_LIMIT", "ORDER_TYPE_SELL_LIMIT", "ORDER_TYPE_BUY_STOP", "ORDER_TYPE_SELL_STOP")


def clean(value: Decimal) -> Decimal:
    """``0.10000`` -> ``0.1``, ``100000.00000`` -> ``100000``: the EA pads every double to 5 decimals."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def num(value: Any) -> Decimal:
    """A number from the EA's JSON (null and missing are 0, as the EA writes empty values)."""
    if value is None or value is False:
        return ZERO
    if isinstance(value, Decimal):
        return clean(value)
    if isinstance(value, int):
        return Decimal(value)
    try:
        return clean(Decimal(str(value)))
    except ArithmeticError:
        raise ValueError(f"not a number: {value!r}") from None


def retcode_error(retcode: int, description: str | None = None) -> BrokerError | None:
    """Our error for an MT5 trade retcode (None for success). Retries are the caller's business."""
    if retcode in SUCCESS:
        return None
    if retcode == 0:  # CTrade returned false before OrderSend (no such ticket, not allowed on this account)
        return OrderError("TRADE_RETCODE_NONE: refused by CTrade before reaching the server", code="0")
    name = f"TRADE_RETCODE_{NAMES.get(retcode, retcode)}"
    if retcode == 10019:
        return InsufficientFundsError(f"{name}: not enough money", code=str(retcode))
    if retcode in CONNECTION:
        return BrokerConnectionError(f"{name}: outcome unknown", code=str(retcode))
    if retcode == 10025:
        return ModificationError(f"{name}: nothing to change", code=str(retcode))
    return OrderError(name, code=str(retcode))
