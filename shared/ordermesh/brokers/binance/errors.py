"""Binance's errors as the broker error model: Binance's ``code`` and ``msg`` (from the answer's body, else from
ccxt's exception message) and ccxt's exception classes mapped to our :class:`BrokerError` subclasses."""

from __future__ import annotations

import json
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


def binance_error(exc: Exception, body: Any = None) -> tuple[str | None, str]:
    """Binance's ``code`` and ``msg``: from the answer's body (kept per request), else from the body ccxt puts at
    the end of its exception message."""
    if isinstance(body, dict) and "code" in body and "msg" in body:
        return str(body["code"]), str(body["msg"])
    text = str(exc)
    start = text.find('{"code"')
    if start >= 0:
        try:
            found = json.loads(text[start:])
            return str(found.get("code")), str(found.get("msg", text))
        except ValueError:
            pass
    return None, text


def map_error(exc: Exception, body: Any = None) -> BrokerError:
    """Our error for a ccxt exception. Order matters: ccxt's InsufficientFunds and OrderNotFound are
    InvalidOrder/ExchangeError subclasses, InvalidNonce and the rate-limit errors are NetworkError subclasses."""
    code, msg = binance_error(exc, body)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFundsError(msg, code=code)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.BadSymbol):
        return SymbolNotFoundError(msg, code=code)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.InvalidNonce):
        # -2015 / -1022 / -1021 (timestamp outside recvWindow): the request was refused, nothing happened
        return AuthenticationError(msg, code=code)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest):
        return OrderError(msg, code=code)
    if isinstance(exc, ccxt.NetworkError):
        return BrokerConnectionError(f"{type(exc).__name__}: outcome unknown", code=code)
    return BrokerError(msg, code=code)
