"""Binance's errors as the broker error model, by Binance's documented error ``code`` (one table,
:data:`ERROR_CODES`, each row naming its documentation page); the message decides only where Binance documents one
code for several meanings (spot -2010 / -2011). Binance says it: "Codes are universal, but messages can vary".

Before the table: HTTP 429 / 418 are rate limits (nothing was processed) and HTTP 5xx leaves the execution status
unknown (Binance's General API Information). After it, an error with no Binance code (ccxt's own checks such as
``amount_to_precision``, a timeout, an unreadable answer) maps by ccxt's exception class. Every ccxt failure thus
ends as a :class:`BrokerError`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt.async_support as ccxt

from ordermesh.brokers.model import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerError,
    InsufficientFundsError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)

SPOT_ERRORS = "https://developers.binance.com/docs/binance-spot-api-docs/errors"
USDM_ERRORS = "https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code"


class DuplicateOrderError(OrderError):
    """The client order id is in use by an order of ours: that order is the answer."""


class KeyRejectedError(AuthenticationError):
    """Binance refuses the API key (revoked, wrong IP, missing permission, bad signature): nothing was done, and
    nothing signed will be until the key is accepted again."""


class ClockSkewError(AuthenticationError):
    """A signed request refused for its timestamp (-1021): nothing was done; our clock is measured again."""


class RateLimitedError(BrokerConnectionError):
    """429 / 418, -1003 / -1015: nothing was processed; sent again after ``Retry-After``."""


UNKNOWN = BrokerConnectionError  # the execution status is unknown: the order is looked up before anything else


@dataclass(frozen=True, slots=True)
class Code:
    """One documented Binance error code of one API (its ``page``) and what it means to us."""

    code: int
    name: str
    error: type[BrokerError]
    page: str
    #: Where the page lists several meanings for the code: message -> error (else ``error``).
    messages: Mapping[str, type[BrokerError]] = field(default_factory=dict)


def _rows(page: str, error: type[BrokerError], names: Mapping[int, str]) -> list[Code]:
    return [Code(code, name, error, page) for code, name in names.items()]


_GENERAL = {  # 10xx on both pages
    -1000: ("UNKNOWN", UNKNOWN),
    -1001: ("DISCONNECTED", UNKNOWN),
    -1002: ("UNAUTHORIZED", KeyRejectedError),
    -1003: ("TOO_MANY_REQUESTS", RateLimitedError),
    -1006: ("UNEXPECTED_RESP", UNKNOWN),  # "Execution status unknown."
    -1007: ("TIMEOUT", UNKNOWN),  # "Send status unknown; execution status unknown."
    -1008: ("SERVER_BUSY", UNKNOWN),  # USD-M: "Request Throttled"
    -1013: ("INVALID_MESSAGE", OrderError),  # spot: the filter failures
    -1014: ("UNKNOWN_ORDER_COMPOSITION", OrderError),
    -1015: ("TOO_MANY_ORDERS", RateLimitedError),
    -1016: ("SERVICE_SHUTTING_DOWN", UNKNOWN),
    -1020: ("UNSUPPORTED_OPERATION", OrderError),
    -1021: ("INVALID_TIMESTAMP", ClockSkewError),
    -1022: ("INVALID_SIGNATURE", KeyRejectedError),
}
_REQUEST = {  # 11xx on both pages: the request was refused as sent
    -1100: "ILLEGAL_CHARS", -1101: "TOO_MANY_PARAMETERS", -1102: "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
    -1103: "UNKNOWN_PARAM", -1104: "UNREAD_PARAMETERS", -1105: "PARAM_EMPTY", -1106: "PARAM_NOT_REQUIRED",
    -1111: "BAD_PRECISION", -1112: "NO_DEPTH", -1114: "TIF_NOT_REQUIRED", -1115: "INVALID_TIF",
    -1116: "INVALID_ORDER_TYPE", -1117: "INVALID_SIDE", -1118: "EMPTY_NEW_CL_ORD_ID", -1119: "EMPTY_ORG_CL_ORD_ID",
    -1120: "BAD_INTERVAL", -1127: "MORE_THAN_XX_HOURS", -1128: "OPTIONAL_PARAMS_BAD_COMBO",
    -1130: "INVALID_PARAMETER",
}  # fmt: skip
_SPOT_OCO = {
    -1158: "OCO_ORDER_TYPE_REJECTED", -1160: "OCO_ICEBERGQTY_TIMEINFORCE", -1165: "BUY_OCO_LIMIT_MUST_BE_BELOW",
    -1166: "SELL_OCO_LIMIT_MUST_BE_ABOVE", -1168: "BOTH_OCO_ORDERS_CANNOT_BE_LIMIT",
    -1196: "BUY_OCO_STOP_LOSS_MUST_BE_ABOVE", -1197: "SELL_OCO_STOP_LOSS_MUST_BE_BELOW",
    -1198: "BUY_OCO_TAKE_PROFIT_MUST_BE_BELOW", -1199: "SELL_OCO_TAKE_PROFIT_MUST_BE_ABOVE",
    -2021: "Order cancel-replace partially failed", -2022: "Order cancel-replace failed",
}  # fmt: skip
_USDM_REFUSED = {
    -2020: "UNABLE_TO_FILL", -2021: "ORDER_WOULD_IMMEDIATELY_TRIGGER", -2022: "REDUCE_ONLY_REJECT",
    -2025: "MAX_OPEN_ORDER_EXCEEDED", -2026: "REDUCE_ONLY_ORDER_TYPE_NOT_SUPPORTED", -2027: "MAX_LEVERAGE_RATIO",
    -4003: "QTY_LESS_THAN_ZERO", -4014: "PRICE_NOT_INCREASED_BY_TICK_SIZE", -4023: "QTY_NOT_INCREASED_BY_STEP_SIZE",
    -4028: "INVALID_LEVERAGE", -4046: "NO_NEED_TO_CHANGE_MARGIN_TYPE", -4059: "NO_NEED_TO_CHANGE_POSITION_SIDE",
    -4060: "INVALID_POSITION_SIDE", -4061: "POSITION_SIDE_NOT_MATCH",
    -4067: "POSITION_SIDE_CHANGE_EXISTS_OPEN_ORDERS", -4068: "POSITION_SIDE_CHANGE_EXISTS_QUANTITY",
    -4120: "STOP_ORDER_SWITCH_ALGO", -4131: "MARKET_ORDER_REJECT", -4164: "MIN_NOTIONAL", -5021: "FOK_ORDER_REJECT",
    -5022: "GTX_ORDER_REJECT", -5025: "LIMIT_ORDER_ONLY", -5027: "SAME_ORDER",
}  # fmt: skip

# spot: "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 CANCEL_REJECTED" (several meanings)
_SPOT_2010: dict[str, type[BrokerError]] = {
    "Duplicate order sent.": DuplicateOrderError,
    "Account has insufficient balance for requested action.": InsufficientFundsError,
}

#: Every Binance error code the adapters know, per API page. Codes absent here map by HTTP status, then by ccxt's
#: exception class (:func:`map_error`).
ERROR_CODES: tuple[Code, ...] = (
    *(Code(c, n, e, page) for page in (SPOT_ERRORS, USDM_ERRORS) for c, (n, e) in _GENERAL.items()),
    *_rows(SPOT_ERRORS, OrderError, _REQUEST),
    *_rows(USDM_ERRORS, OrderError, _REQUEST),
    Code(-1121, "BAD_SYMBOL", SymbolNotFoundError, SPOT_ERRORS),
    Code(-1121, "BAD_SYMBOL", SymbolNotFoundError, USDM_ERRORS),
    *_rows(SPOT_ERRORS, OrderError, _SPOT_OCO),
    Code(-2010, "NEW_ORDER_REJECTED", OrderError, SPOT_ERRORS, _SPOT_2010),
    Code(-2011, "CANCEL_REJECTED", OrderError, SPOT_ERRORS, {"Unknown order sent.": OrderNotFoundError}),
    Code(-2013, "NO_SUCH_ORDER", OrderNotFoundError, SPOT_ERRORS),
    Code(-2014, "BAD_API_KEY_FMT", KeyRejectedError, SPOT_ERRORS),
    Code(-2015, "REJECTED_MBX_KEY", KeyRejectedError, SPOT_ERRORS),
    Code(-2026, "ORDER_ARCHIVED", OrderNotFoundError, SPOT_ERRORS),
    Code(-2010, "NEW_ORDER_REJECTED", OrderError, USDM_ERRORS),
    Code(-2011, "CANCEL_REJECTED", OrderError, USDM_ERRORS, {"Unknown order sent.": OrderNotFoundError}),
    Code(-2013, "NO_SUCH_ORDER", OrderNotFoundError, USDM_ERRORS),
    Code(-2014, "BAD_API_KEY_FMT", KeyRejectedError, USDM_ERRORS),
    Code(-2015, "REJECTED_MBX_KEY", KeyRejectedError, USDM_ERRORS),
    Code(-2018, "BALANCE_NOT_SUFFICIENT", InsufficientFundsError, USDM_ERRORS),
    Code(-2019, "MARGIN_NOT_SUFFICIEN", InsufficientFundsError, USDM_ERRORS),
    Code(-2024, "POSITION_NOT_SUFFICIENT", OrderError, USDM_ERRORS),
    Code(-2028, "MIN_LEVERAGE_RATIO", InsufficientFundsError, USDM_ERRORS),
    Code(-4116, "DUPLICATED_CLIENT_ORDER_ID", DuplicateOrderError, USDM_ERRORS),
    Code(-5028, "ME_RECVWINDOW_REJECT", ClockSkewError, USDM_ERRORS),
    *_rows(USDM_ERRORS, OrderError, _USDM_REFUSED),
)
_BY_CODE: dict[tuple[str, int], Code] = {(row.page, row.code): row for row in ERROR_CODES}


def binance_error(exc: Exception, body: Any = None) -> tuple[int | None, str]:
    """Binance's ``code`` and ``msg``: from the answer's body (kept per request), else from the body ccxt puts at
    the end of its exception message; (None, ccxt's message) when there is none."""
    found = body if isinstance(body, dict) and "code" in body else None
    if found is None:
        text = str(exc)
        start = text.find('{"code"')
        if start >= 0:
            try:
                found = json.loads(text[start:])
            except ValueError:
                found = None
    if isinstance(found, dict):
        try:
            return int(found["code"]), str(found.get("msg", exc))
        except (KeyError, TypeError, ValueError):
            pass
    return None, str(exc)


def _by_class(exc: Exception, msg: str, code: str | None) -> BrokerError:
    """ccxt's exception class, for errors that carry no Binance code (ccxt's own checks, the network). Order
    matters: ccxt's InsufficientFunds and OrderNotFound are InvalidOrder / ExchangeError subclasses, InvalidNonce
    and the rate-limit errors NetworkError subclasses."""
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFundsError(msg, code=code)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.BadSymbol):
        return SymbolNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.InvalidNonce):
        return ClockSkewError(msg, code=code)
    if isinstance(exc, ccxt.AuthenticationError):
        return KeyRejectedError(msg, code=code)
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimitedError(f"{type(exc).__name__}: nothing processed", code=code)
    if isinstance(exc, ccxt.NetworkError | ccxt.BadResponse):  # an answer we could not read may be a done order
        return BrokerConnectionError(f"{type(exc).__name__}: outcome unknown", code=code)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return OrderError(msg, code=code)
    return BrokerError(msg, code=code)


def map_error(exc: Exception, body: Any = None, status: int | None = None, *, futures: bool = False) -> BrokerError:
    """Our error for a failed ccxt call: ``body`` and ``status`` are the request's own answer (None when there was
    none), ``futures`` picks the USD-M page's codes."""
    code, msg = binance_error(exc, body)
    text = str(code) if code is not None else None
    if status in (418, 429):
        return RateLimitedError(msg, code=text)
    if status is not None and status >= 500:
        return BrokerConnectionError(f"HTTP {status}: execution status unknown ({msg})", code=text)
    row = _BY_CODE.get((USDM_ERRORS if futures else SPOT_ERRORS, code)) if code is not None else None
    if row is not None:
        return row.messages.get(msg, row.error)(msg, code=text)
    return _by_class(exc, msg, text)
