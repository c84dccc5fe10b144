"""Every failure of a ccxt call as a broker error: ccxt's own checks (amount precision) before anything is sent, and
Binance's answers by their documented code (one table, ``ordermesh.brokers.binance.errors``), the message only
where a code has several meanings. Real ccxt against the local Binance-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import ccxt.async_support as ccxt
import msgspec
import pytest

from ordermesh.brokers.binance import errors
from ordermesh.brokers.binance.errors import (
    ClockSkewError,
    DuplicateOrderError,
    KeyRejectedError,
    RateLimitedError,
    map_error,
)
from ordermesh.brokers.model import (
    BrokerConnectionError,
    BrokerError,
    BrokerOrderState,
    InsufficientFundsError,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.contract.wire import OrderType
from tests.brokers.binance import test_adapter as spot_t
from tests.brokers.binance import test_futures as fut_t
from tools.binance_server import BinanceServer

D = Decimal
LIMIT = OrderType.LIMIT


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


# ----------------------------------------------------------------------------------------- ccxt's own checks


async def test_a_spot_quantity_below_the_lot_step_is_refused_as_an_order_error_and_never_sent(
    server: BinanceServer,
) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        cmd = spot_t.place(1, qty="0.000004")  # LOT_SIZE step 0.00001: ccxt truncates it to nothing
        with pytest.raises(OrderError) as exc:
            await a.place_order(cmd)
        assert type(exc.value) is OrderError
        assert exc.value.message == (
            "Filter failure: LOT_SIZE (quantity 0.000004 is below the step 0.00001 of BTC/USDT; not sent)"
        )
        # delivered again (the gateway resumes it first): refused again, and never left to look up on each poll
        await a.resume([cmd])
        with pytest.raises(OrderError):
            await a.place_order(cmd)
        mark = len(server.requests)
        assert await a.poll_working() == []
        assert server.requests[mark:] == []
        assert server.count_requests("POST", "order") == 0
        assert (await a.place_order(msgspec.structs.replace(cmd, quantity=D("0.0001")))).filled_qty == D("0.0001")
    finally:
        await a.close()


async def test_a_futures_quantity_or_amend_below_the_lot_step_is_refused_and_the_order_stays(
    server: BinanceServer,
) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        with pytest.raises(OrderError) as exc:
            await a.place_order(fut_t.place(1, qty="0.0004"))  # step 0.001
        assert exc.value.message == (
            "Filter failure: LOT_SIZE (quantity 0.0004 is below the step 0.001 of BTC/USDT:USDT; not sent)"
        )
        assert server.count_requests("POST", "fapi/v1/order") == 0
        order = await a.place_order(fut_t.place(2, qty="0.01", order_type=LIMIT, limit="45000"))
        with pytest.raises(ModificationError) as mod:
            await a.modify_order(order.client_order_id, quantity=D("0.0004"))
        assert "LOT_SIZE" in mod.value.message
        assert server.count_requests("PUT", "fapi/v1/order") == 0
        (resting,) = server.futures.orders.values()
        assert (resting.status, resting.orig_qty) == ("NEW", D("0.01"))
        status = await a.get_order_status(order.client_order_id)
        assert (status.state, status.quantity) == (BrokerOrderState.NEW, D("0.01"))
    finally:
        await a.close()


async def test_a_spot_modify_below_the_lot_step_is_refused_before_the_order_is_canceled(
    server: BinanceServer,
) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        order = await a.place_order(spot_t.place(1, qty="0.2", order_type=LIMIT, limit="49000"))
        with pytest.raises(ModificationError) as exc:
            await a.modify_order(order.client_order_id, quantity=D("0.000004"))
        assert "LOT_SIZE" in exc.value.message
        assert server.count_requests("DELETE", "order") == 0
        assert (await a.get_order_status(order.client_order_id)).state is BrokerOrderState.NEW
    finally:
        await a.close()


# ----------------------------------------------------------------------------------------- codes, not messages


async def test_futures_duplicate_client_order_id_is_known_by_its_code_whatever_the_message(
    server: BinanceServer,
) -> None:
    cmd = fut_t.place(5, order_type=LIMIT, limit="45000")
    first = fut_t.make_adapter(server, heartbeat_interval_s=0)
    restarted = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        placed = await first.place_order(cmd)
        server.fail_next("fapi/v1/order", -4116, "Client order id is already in use.")  # another wording
        dup = await restarted.place_order(cmd)
        assert (dup.broker_order_id, dup.state) == (placed.broker_order_id, BrokerOrderState.NEW)
        assert len(server.futures.orders) == 1
    finally:
        await first.close()
        await restarted.close()


async def test_spot_2010_with_an_unknown_wording_is_looked_up_before_it_counts_as_a_rejection(
    server: BinanceServer,
) -> None:
    cmd = spot_t.place(6, order_type=LIMIT, limit="49000")
    first = spot_t.make_adapter(server, heartbeat_interval_s=0)
    restarted = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        placed = await first.place_order(cmd)
        server.fail_next("order", -2010, "Order with this client order id is open.")  # -2010 has many meanings
        dup = await restarted.place_order(cmd)
        assert dup.broker_order_id == placed.broker_order_id
        server.fail_next("order", -2010, "Market is closed.")  # a real rejection: not found, so refused
        with pytest.raises(OrderError) as exc:
            await restarted.place_order(spot_t.place(7, qty="0.01"))
        assert (exc.value.code, exc.value.message) == ("-2010", "Market is closed.")
        assert (await restarted.place_order(spot_t.place(7, qty="0.01"))).state is BrokerOrderState.FILLED
    finally:
        await first.close()
        await restarted.close()


def _exc(code: int | None, msg: str) -> ccxt.BaseError:
    return ccxt.ExchangeError(f'binance {{"code":{code},"msg":"{msg}"}}' if code is not None else msg)


@pytest.mark.parametrize(
    ("futures", "status", "code", "msg", "expected"),
    [
        (False, 400, -2010, "Duplicate order sent.", DuplicateOrderError),
        (False, 400, -2010, "Account has insufficient balance for requested action.", InsufficientFundsError),
        (False, 400, -2010, "Market is closed.", OrderError),
        (False, 400, -2011, "Unknown order sent.", OrderNotFoundError),
        (False, 400, -2011, "Order was not canceled due to cancel restrictions.", OrderError),
        (False, 400, -2013, "Order does not exist.", OrderNotFoundError),
        (False, 400, -1013, "Filter failure: LOT_SIZE", OrderError),
        (False, 400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.", OrderError),
        (False, 400, -1121, "Invalid symbol.", SymbolNotFoundError),
        (False, 401, -2015, "Invalid API-key, IP, or permissions for action.", KeyRejectedError),
        (False, 401, -2014, "API-key format invalid.", KeyRejectedError),
        (False, 400, -1022, "Signature for this request is not valid.", KeyRejectedError),
        (False, 400, -1021, "Timestamp for this request is outside of the recvWindow.", ClockSkewError),
        (False, 429, -1003, "Too much request weight used; current limit is 6000", RateLimitedError),
        (False, 418, -1003, "Way too much request weight used; IP banned until 1", RateLimitedError),
        (False, 429, -1015, "Too many new orders.", RateLimitedError),
        (False, 408, -1007, "Timeout waiting for response from backend server.", BrokerConnectionError),
        (False, 400, -1006, "An unexpected response was received from the message bus.", BrokerConnectionError),
        (False, 503, None, "Service Unavailable", BrokerConnectionError),  # 5xx: execution status unknown
        (True, 400, -4116, "ClientOrderId is duplicated.", DuplicateOrderError),
        (True, 400, -4116, "Any other wording.", DuplicateOrderError),
        (True, 400, -2019, "Margin is insufficient.", InsufficientFundsError),
        (True, 400, -2018, "Balance is insufficient.", InsufficientFundsError),
        (True, 400, -2022, "ReduceOnly Order is rejected.", OrderError),
        (True, 400, -2021, "Order would immediately trigger.", OrderError),
        (True, 400, -2011, "Unknown order sent.", OrderNotFoundError),
        (True, 400, -2013, "Order does not exist.", OrderNotFoundError),
        (True, 400, -4120, "Order type not supported for this endpoint.", OrderError),
        (True, 400, -4164, "Order's notional must be no smaller than 100", OrderError),
        (True, 401, -2015, "Invalid API-key, IP, or permissions for action.", KeyRejectedError),
        (True, 400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.", ClockSkewError),
    ],
)
def test_binance_answers_map_by_their_documented_code(
    futures: bool, status: int, code: int | None, msg: str, expected: type[BrokerError]
) -> None:
    body = {"code": code, "msg": msg} if code is not None else None
    err = map_error(_exc(code, msg), body, status, futures=futures)
    assert type(err) is expected
    if code is not None:
        assert (err.code, err.message) == (str(code), msg)


def test_ccxt_exceptions_without_a_binance_answer_map_by_class() -> None:
    cases: list[tuple[ccxt.BaseError, type[BrokerError]]] = [
        (ccxt.InvalidOrder("binance amount of BTC/USDT must be greater than minimum amount precision"), OrderError),
        (ccxt.ArgumentsRequired("binance createOrder() requires a price argument"), OrderError),
        (ccxt.BadSymbol("binance does not have market symbol DOGE/EUR"), SymbolNotFoundError),
        (ccxt.AuthenticationError('binance requires "apiKey" credential'), KeyRejectedError),
        (ccxt.RequestTimeout("binance GET https://x timed out"), BrokerConnectionError),
        (ccxt.NetworkError("Cannot connect to host"), BrokerConnectionError),
        (ccxt.BadResponse("binance GET https://x not JSON"), BrokerConnectionError),
        (ccxt.InsufficientFunds("no money"), InsufficientFundsError),
        (ccxt.OrderNotFound("no order"), OrderNotFoundError),
        (ccxt.NotSupported("not supported"), OrderError),
    ]
    for exc, expected in cases:
        assert type(map_error(exc)) is expected, exc


def test_ccxts_rate_limit_guess_for_a_2015_after_success_is_overruled_by_the_code() -> None:
    # ccxt raises DDoSProtection for -2015 once a private call has succeeded (a temporary ban, it assumes)
    exc = ccxt.DDoSProtection('binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')
    err = map_error(exc, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, 401)
    assert type(err) is KeyRejectedError


def test_the_table_names_the_documentation_page_of_every_code() -> None:
    assert errors.ERROR_CODES, "one table"
    seen = set()
    for row in errors.ERROR_CODES:
        assert row.page in (errors.SPOT_ERRORS, errors.USDM_ERRORS), row
        assert issubclass(row.error, BrokerError) and row.name
        assert (row.page, row.code) not in seen, f"{row.code} twice for one API"
        seen.add((row.page, row.code))
    assert errors.SPOT_ERRORS == "https://developers.binance.com/docs/binance-spot-api-docs/errors"
    assert errors.USDM_ERRORS == "https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code"
