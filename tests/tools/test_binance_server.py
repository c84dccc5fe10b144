"""The local Binance-compatible server itself, through real signed HTTP requests: request weights and limits, book
tickers, spot stop orders and OCO lists, futures algo (conditional) orders and hedge mode, trade queries. The server
clock is frozen (``frozen_ms``) so windows, Retry-After and trade times are exact."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from tools.binance_server import STOP_IMMEDIATE, BinanceServer, SymbolSpec

D = Decimal
T0 = 1_767_225_601_000  # 2026-01-01T00:00:01Z: one second into a minute window
HOUR = 3_600_000
DAY = 24 * HOUR
SYM = {"symbol": "BTCUSDT"}
ALGO = {"symbol": "BTCUSDT", "algoType": "CONDITIONAL"}
ALGO_ONLY = (400, -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")


def algo_view(**changes: Any) -> dict[str, Any]:
    """The view of a NEW reduce-only SELL STOP_MARKET algo order (3001, "sl", 0.1 at 49000) with ``changes``."""
    view = {
        "algoId": 3001, "clientAlgoId": "sl", "algoType": "CONDITIONAL", "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "timeInForce": "GTC", "quantity": "0.10000000",
        "algoStatus": "NEW", "actualOrderId": "", "actualPrice": "0.00000000", "triggerPrice": "49000.00000000",
        "price": "0.00000000", "icebergQuantity": None, "tpTriggerPrice": "0.000", "tpPrice": "0.000",
        "slTriggerPrice": "0.000", "slPrice": "0.000", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "CONTRACT_PRICE", "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
        "reduceOnly": True, "createTime": T0, "updateTime": T0, "triggerTime": 0, "goodTillDate": 0,
    }  # fmt: skip
    assert set(changes) <= set(view), changes
    return {**view, **changes}


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def weight(self) -> int:
        return int(self.headers["X-MBX-USED-WEIGHT-1M"])

    @property
    def error(self) -> tuple[int, str]:
        return self.body["code"], self.body["msg"]


class Api:
    """A minimal Binance REST client: HMAC-SHA256 over the query string, the timestamp from the server clock."""

    def __init__(self, session: aiohttp.ClientSession, server: BinanceServer) -> None:
        self.session, self.server = session, server
        self.secret = server.api_secret
        self.skew_ms = 0  # our clock against the server's

    async def call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, signed: bool = False
    ) -> Answer:
        items = [(k, str(v)) for k, v in (params or {}).items()]
        if signed:
            items.append(("timestamp", str(self.server.now_ms() + self.skew_ms)))
        query = urlencode(items)
        if signed:
            digest = hmac.new(self.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
            query += f"&signature={digest}"
        url = URL(f"{self.server.url}{path}" + (f"?{query}" if query else ""), encoded=True)
        async with self.session.request(method, url, headers={"X-MBX-APIKEY": self.server.api_key}) as resp:
            return Answer(resp.status, await resp.json(), dict(resp.headers))

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.call("GET", path, params)

    async def signed(self, method: str, path: str, **params: Any) -> Answer:
        return await self.call(method, path, params, signed=True)

    async def ok(self, method: str, path: str, **params: Any) -> Any:
        answer = await self.signed(method, path, **params)
        assert answer.status == 200, answer.body
        return answer.body

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        body = await self.ok("GET", "/api/v3/account")
        return {b["asset"]: (D(b["free"]), D(b["locked"])) for b in body["balances"]}

    async def order(self, **params: Any) -> Any:
        return await self.ok("GET", "/api/v3/order", symbol="BTCUSDT", **params)

    async def wallet(self) -> Decimal:
        return D((await self.ok("GET", "/fapi/v2/account"))["totalWalletBalance"])

    async def positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        rows = await self.ok("GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")
        return {r["positionSide"]: (D(r["positionAmt"]), D(r["entryPrice"])) for r in rows}

    async def algo(self, **params: Any) -> Any:
        return await self.ok("GET", "/fapi/v1/algoOrder", **params)

    async def open_algos(self, **params: Any) -> list[str]:
        """The clientAlgoId of the open (NEW) algo orders."""
        return [a["clientAlgoId"] for a in await self.ok("GET", "/fapi/v1/openAlgoOrders", **params)]


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    s.frozen_ms = T0
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def api(server: BinanceServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server)


def error(answer: Answer) -> tuple[int, int, str]:
    return answer.status, *answer.error


# ----------------------------------------------------------------------------------------- request weight


async def test_spot_weights_per_endpoint(api: Api, server: BinanceServer) -> None:
    oco = {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "listClientOrderId": "w-oco",
        "aboveType": "LIMIT_MAKER", "abovePrice": "52000", "belowType": "STOP_LOSS", "belowStopPrice": "48000",
    }  # fmt: skip
    limit = {**SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "40000",
             "newClientOrderId": "w1"}  # fmt: skip
    steps: list[tuple[str, str, dict[str, Any], bool, int]] = [
        ("GET", "ping", {}, False, 1),
        ("GET", "time", {}, False, 1),
        ("GET", "exchangeInfo", {}, False, 20),
        ("GET", "depth", SYM, False, 5),  # default limit 100
        ("GET", "depth", {**SYM, "limit": 500}, False, 25),
        ("GET", "depth", {**SYM, "limit": 1000}, False, 50),
        ("GET", "depth", {**SYM, "limit": 5000}, False, 250),
        ("GET", "ticker/bookTicker", SYM, False, 2),
        ("GET", "ticker/bookTicker", {"symbols": '["BTCUSDT"]'}, False, 4),
        ("GET", "ticker/bookTicker", {}, False, 4),
        ("GET", "account", {}, True, 20),
        ("POST", "order", limit, True, 1),
        ("GET", "order", {**SYM, "origClientOrderId": "w1"}, True, 4),
        ("GET", "openOrders", SYM, True, 6),
        ("GET", "openOrders", {}, True, 80),
        ("DELETE", "order", {**SYM, "origClientOrderId": "w1"}, True, 1),
        ("GET", "myTrades", SYM, True, 20),
        ("GET", "myTrades", {**SYM, "orderId": 1001}, True, 5),
        ("POST", "orderList/oco", oco, True, 1),
        ("DELETE", "orderList", {**SYM, "listClientOrderId": "w-oco"}, True, 1),
    ]
    total = 0
    for method, path, params, signed, weight in steps:
        answer = await api.call(method, f"/api/v3/{path}", params, signed=signed)
        assert answer.status == 200, (path, answer.body)
        total += weight
        assert (path, answer.weight) == (path, total)
    assert total == 501
    assert server.used_weight() == 501 and server.weight == 501
    assert server.used_weight(futures=True) == 0


async def test_futures_weights_per_endpoint_counted_apart(api: Api, server: BinanceServer) -> None:
    server.set_used_weight(100)  # the spot window: untouched by futures requests
    order = {**SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "40000",
             "newClientOrderId": "f1"}  # fmt: skip
    amend = {**SYM, "origClientOrderId": "f1", "side": "BUY", "quantity": "0.02", "price": "40000"}
    algo = {**ALGO, "side": "SELL", "type": "STOP_MARKET", "quantity": "0.01", "triggerPrice": "40000",
            "clientAlgoId": "a1"}  # fmt: skip
    steps: list[tuple[str, str, dict[str, Any], bool, int]] = [
        ("GET", "v1/ping", {}, False, 1),
        ("GET", "v1/time", {}, False, 1),
        ("GET", "v1/exchangeInfo", {}, False, 1),
        ("GET", "v1/depth", SYM, False, 10),  # default limit 500
        ("GET", "v1/depth", {**SYM, "limit": 5}, False, 2),
        ("GET", "v1/depth", {**SYM, "limit": 50}, False, 2),
        ("GET", "v1/depth", {**SYM, "limit": 100}, False, 5),
        ("GET", "v1/depth", {**SYM, "limit": 1000}, False, 20),
        ("GET", "v1/ticker/bookTicker", SYM, False, 2),
        ("GET", "v1/ticker/bookTicker", {}, False, 5),
        ("GET", "v2/account", {}, True, 5),
        ("GET", "v3/account", {}, True, 5),
        ("GET", "v2/positionRisk", {}, True, 5),
        ("GET", "v3/positionRisk", {}, True, 5),
        ("POST", "v1/leverage", {**SYM, "leverage": 10}, True, 1),
        ("POST", "v1/marginType", {**SYM, "marginType": "ISOLATED"}, True, 1),
        ("GET", "v1/positionSide/dual", {}, True, 30),
        ("POST", "v1/order", order, True, 1),
        ("GET", "v1/order", {**SYM, "origClientOrderId": "f1"}, True, 1),
        ("PUT", "v1/order", amend, True, 1),
        ("GET", "v1/openOrders", SYM, True, 1),
        ("GET", "v1/openOrders", {}, True, 40),
        ("DELETE", "v1/order", {**SYM, "origClientOrderId": "f1"}, True, 1),
        ("GET", "v1/userTrades", SYM, True, 5),
        ("POST", "v1/algoOrder", algo, True, 0),  # placing an algo order: 0 IP weight
        ("GET", "v1/algoOrder", {"clientAlgoId": "a1"}, True, 1),
        ("GET", "v1/algoOrder", {"algoId": 3001}, True, 1),
        ("GET", "v1/openAlgoOrders", SYM, True, 1),
        ("GET", "v1/openAlgoOrders", {}, True, 40),
        ("DELETE", "v1/algoOrder", {"algoId": 3001}, True, 1),
        ("POST", "v1/positionSide/dual", {"dualSidePosition": "true"}, True, 1),
    ]
    total = 0
    for method, path, params, signed, weight in steps:
        answer = await api.call(method, f"/fapi/{path}", params, signed=signed)
        assert answer.status == 200, (path, answer.body)
        total += weight
        assert (path, answer.weight) == (path, total)
    assert total == 196
    assert (server.used_weight(futures=True), server.used_weight()) == (196, 100)
    assert (await api.get("/api/v3/ping")).weight == 101
    # an algo order refused for its parameters is counted at its weight too
    assert (await api.signed("GET", "/fapi/v1/algoOrder", algoId=9999)).weight == 197
    assert (await api.signed("POST", "/fapi/v1/algoOrder", **SYM, algoType="TWAP")).weight == 197


async def test_errors_carry_the_weight_and_hooks_count_as_documented(api: Api, server: BinanceServer) -> None:
    api.secret = "other"  # our signature no longer matches
    answer = await api.signed("GET", "/api/v3/account")
    assert error(answer) == (400, -1022, "Signature for this request is not valid.")
    assert answer.weight == 20
    api.secret = server.api_secret
    answer = await api.get("/api/v3/depth", symbol="NOPE")
    assert (error(answer), answer.weight) == ((400, -1121, "Invalid symbol."), 25)
    answer = await api.get("/api/v3/nothingHere")
    assert (answer.status, answer.weight) == (404, 26)
    server.fail_next("order", -1013, "Filter failure: LOT_SIZE")  # an error answer: processed, counted
    answer = await api.signed("GET", "/api/v3/order", symbol="BTCUSDT", orderId=1)
    assert (error(answer), answer.weight) == ((400, -1013, "Filter failure: LOT_SIZE"), 30)
    server.rate_limit_next("account", retry_after_s=7)  # a 429: nothing processed, nothing counted
    answer = await api.signed("GET", "/api/v3/account")
    assert (answer.status, answer.headers["Retry-After"], answer.weight) == (429, "7", 30)
    server.set_used_weight(1000)
    assert (await api.get("/api/v3/ping")).weight == 1001
    assert server.weight == 1001


async def test_a_request_past_the_limit_is_refused_until_the_next_window(api: Api, server: BinanceServer) -> None:
    server.set_used_weight(5990)
    answer = await api.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert answer.status == 200 and answer.weight == 5991
    answer = await api.signed("GET", "/api/v3/account")  # weight 20: 6011 > 6000
    assert error(answer) == (
        429, -1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use "
        "WebSocket Streams for live updates to avoid polling the API.",
    )  # fmt: skip
    assert (answer.headers["Retry-After"], answer.weight) == ("59", 5991)  # 59 s to the next minute
    server.set_used_weight(6000)
    answer = await api.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert (answer.status, answer.weight) == (429, 6000)
    assert len(server.orders) == 1  # the refused order was never placed
    # futures have their own window and limit
    assert (await api.get("/fapi/v1/ping")).weight == 1
    server.set_used_weight(2396, futures=True)
    answer = await api.signed("GET", "/fapi/v2/account")  # weight 5: 2401 > 2400
    assert error(answer) == (
        429, -1003, "Too many requests; current limit is 2400 requests per minute. Please use the websocket for "
        "live updates to avoid polling the API.",
    )  # fmt: skip
    assert answer.weight == 2396
    assert (await api.get("/fapi/v1/time")).weight == 2397
    server.futures.weight_limit = 2397
    assert (await api.get("/fapi/v1/time")).status == 429
    # half a second before the next window: Retry-After rounds up to whole seconds
    server.frozen_ms = T0 + 58_500
    assert (await api.get("/api/v3/ping")).headers["Retry-After"] == "1"
    # the next minute starts both windows at zero
    server.frozen_ms = T0 + 59_000
    assert (await api.get("/api/v3/ping")).weight == 1
    assert (await api.get("/fapi/v1/depth", symbol="BTCUSDT", limit=5)).weight == 2
    assert (server.used_weight(), server.used_weight(futures=True)) == (1, 2)


async def test_exchange_info_states_the_limits_and_order_types(api: Api, server: BinanceServer) -> None:
    server.weight_limit, server.futures.weight_limit = 1200, 500
    spot = (await api.get("/api/v3/exchangeInfo")).body
    weight = [r for r in spot["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}]
    assert spot["symbols"][0]["orderTypes"] == [
        "LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT",
    ]  # fmt: skip
    assert spot["serverTime"] == T0
    futures = (await api.get("/fapi/v1/exchangeInfo")).body
    weight = [r for r in futures["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 500}]
    assert futures["symbols"][0]["orderTypes"] == [
        "LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
    ]  # fmt: skip
    for _ in range(10):  # the changed limit applies: 11 x 20 fit 1200
        assert (await api.get("/api/v3/exchangeInfo")).status == 200
    server.set_used_weight(1181)
    assert (await api.get("/api/v3/exchangeInfo")).status == 429


# ----------------------------------------------------------------------------------------- book tickers


async def test_spot_book_ticker_one_several_or_all(api: Api, server: BinanceServer) -> None:
    server.symbols["ETHUSDT"] = SymbolSpec("ETHUSDT", "ETH", "USDT")
    server.bids["ETHUSDT"] = [(D("2999.50"), D("4")), (D("2999.00"), D("10"))]
    server.asks["ETHUSDT"] = [(D("3000.50"), D("3"))]
    btc = {"symbol": "BTCUSDT", "bidPrice": "49999.00000000", "bidQty": "0.50000000", "askPrice": "50001.00000000",
           "askQty": "0.30000000"}  # fmt: skip
    eth = {"symbol": "ETHUSDT", "bidPrice": "2999.50000000", "bidQty": "4.00000000", "askPrice": "3000.50000000",
           "askQty": "3.00000000"}  # fmt: skip
    assert (await api.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT")).body == btc
    assert (await api.get("/api/v3/ticker/bookTicker", symbols='["ETHUSDT","BTCUSDT"]')).body == [eth, btc]
    assert (await api.get("/api/v3/ticker/bookTicker")).body == [btc, eth]
    answer = await api.get("/api/v3/ticker/bookTicker", symbols='["BTCUSDT","XYZUSDT"]')
    assert error(answer) == (400, -1121, "Invalid symbol.")
    answer = await api.get("/api/v3/ticker/bookTicker", symbols='["BTCUSDT","BTCUSDT"]')
    assert error(answer) == (400, -1151, "Symbol is present multiple times in the list.")
    answer = await api.get("/api/v3/ticker/bookTicker", symbols="BTCUSDT")
    assert answer.error[0] == -1100 and "'symbols'" in answer.error[1]
    answer = await api.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT", symbols='["BTCUSDT"]')
    assert error(answer) == (400, -1128, "Combination of optional parameters invalid.")
    # the top of the book moves with what is taken
    await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.3")
    body = (await api.get("/api/v3/ticker/bookTicker", symbol="BTCUSDT")).body
    assert (body["askPrice"], body["askQty"]) == ("50002.00000000", "1.00000000")


async def test_futures_book_ticker_one_or_all(api: Api, server: BinanceServer) -> None:
    row = {"lastUpdateId": 1027024, "symbol": "BTCUSDT", "bidPrice": "49999.00000000", "bidQty": "2.00000000",
           "askPrice": "50001.00000000", "askQty": "2.00000000", "time": T0}  # fmt: skip
    assert (await api.get("/fapi/v1/ticker/bookTicker", symbol="BTCUSDT")).body == row
    assert (await api.get("/fapi/v1/ticker/bookTicker")).body == [row]
    answer = await api.get("/fapi/v1/ticker/bookTicker", symbol="NOPE")
    assert error(answer) == (400, -1121, "Invalid symbol.")


# ----------------------------------------------------------------------------------------- spot stop orders


async def test_stop_loss_waits_locked_then_sells_at_market_when_the_last_price_falls(
    api: Api, server: BinanceServer
) -> None:
    assert server.last_price("BTCUSDT") == D("50000")  # the mid of the book
    base = {"symbol": "BTCUSDT", "quantity": "0.1", "newOrderRespType": "FULL"}
    placed = await api.ok("POST", "/api/v3/order", **base, side="SELL", type="STOP_LOSS", stopPrice="49000",
                          newClientOrderId="sl")  # fmt: skip
    assert (placed["status"], placed["type"], placed["stopPrice"], placed["fills"]) == (
        "NEW", "STOP_LOSS", "49000.00000000", [],
    )  # fmt: skip
    view = await api.order(origClientOrderId="sl")
    assert (view["isWorking"], view["workingTime"], view["stopPrice"], view["orderListId"]) == (
        False, -1, "49000.00000000", -1,
    )  # fmt: skip
    assert (await api.balances())["BTC"] == (D("0.9"), D("0.1"))
    # the documented checks
    for params, expected in [
        ({"side": "SELL", "type": "STOP_LOSS", "stopPrice": "50000"}, (-2010, STOP_IMMEDIATE)),
        ({"side": "BUY", "type": "STOP_LOSS", "stopPrice": "49000"}, (-2010, STOP_IMMEDIATE)),
        ({"side": "SELL", "type": "TAKE_PROFIT", "stopPrice": "49500"}, (-2010, STOP_IMMEDIATE)),
        ({"side": "BUY", "type": "TAKE_PROFIT", "stopPrice": "50500"}, (-2010, STOP_IMMEDIATE)),
        ({"side": "SELL", "type": "STOP_LOSS"},
         (-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")),
        ({"side": "SELL", "type": "STOP_LOSS_LIMIT", "stopPrice": "49000", "price": "48900"},
         (-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")),
        ({"side": "SELL", "type": "TAKE_PROFIT_LIMIT", "stopPrice": "51000", "timeInForce": "GTC"},
         (-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")),
        ({"side": "SELL", "type": "STOP_LOSS", "stopPrice": "49000", "price": "48900"},
         (-1106, "Parameter 'price' sent when not required.")),
        ({"side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "51000", "stopPrice": "49000"},
         (-1106, "Parameter 'stopPrice' sent when not required.")),
        ({"side": "SELL", "type": "STOP_LOSS", "stopPrice": "49000.001"}, (-1013, "Filter failure: PRICE_FILTER")),
    ]:  # fmt: skip
        answer = await api.signed("POST", "/api/v3/order", **base, **params)
        assert answer.error == expected, params
    # ACK is the default answer of the types other than LIMIT and MARKET
    ack = await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", quantity="0.1", side="SELL", type="STOP_LOSS",
                       stopPrice="48000", newClientOrderId="sl2")  # fmt: skip
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="sl2")
    assert server.set_last_price("BTCUSDT", "49500") == []  # not reached
    (triggered,) = server.set_last_price("BTCUSDT", "49000")
    assert triggered.client_order_id == "sl"
    view = await api.order(origClientOrderId="sl")
    assert (view["status"], view["executedQty"], view["cummulativeQuoteQty"], view["isWorking"]) == (
        "FILLED", "0.10000000", "4999.90000000", True,
    )  # fmt: skip
    assert view["workingTime"] == T0
    balances = await api.balances()
    assert balances["BTC"] == (D("0.9"), D("0"))
    assert balances["USDT"] == (D("100000") + D("4999.9") - D("4.9999"), D("0"))  # 0.1 % commission
    (trade,) = await api.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT")
    assert (trade["price"], trade["qty"], trade["isMaker"], trade["isBuyer"], trade["time"]) == (
        "49999.00000000", "0.10000000", False, False, T0,
    )  # fmt: skip


async def test_stop_limit_and_take_profit_kinds_trigger_as_working_limit_or_market_orders(
    api: Api, server: BinanceServer
) -> None:
    order = {"symbol": "BTCUSDT", "newOrderRespType": "RESULT"}
    await api.ok("POST", "/api/v3/order", **order, side="BUY", type="STOP_LOSS_LIMIT", quantity="0.2",
                 price="50100", stopPrice="50050", timeInForce="GTC", newClientOrderId="sll")  # fmt: skip
    tpl = await api.ok("POST", "/api/v3/order", **order, side="SELL", type="TAKE_PROFIT_LIMIT", quantity="0.3",
                       price="52000", stopPrice="51500", timeInForce="GTC", newClientOrderId="tpl")  # fmt: skip
    await api.ok("POST", "/api/v3/order", **order, side="BUY", type="TAKE_PROFIT", quantity="0.1",
                 stopPrice="49000", newClientOrderId="tp")  # fmt: skip
    balances = await api.balances()
    assert balances["USDT"] == (D("85080"), D("14920"))  # 0.2 x 50100 + 0.1 x 49000 (the stop price)
    assert balances["BTC"] == (D("0.7"), D("0.3"))
    assert [o["clientOrderId"] for o in await api.ok("GET", "/api/v3/openOrders", symbol="BTCUSDT")] == [
        "sll", "tpl", "tp",
    ]  # fmt: skip
    # STOP_LOSS_LIMIT BUY at 50050: a limit buy at 50100 that crosses the 50001 ask
    assert [o.client_order_id for o in server.set_last_price("BTCUSDT", "50050")] == ["sll"]
    view = await api.order(origClientOrderId="sll")
    assert (view["status"], view["executedQty"], view["cummulativeQuoteQty"]) == (
        "FILLED", "0.20000000", "10000.20000000",
    )  # fmt: skip
    balances = await api.balances()
    assert balances["USDT"] == (D("85099.8"), D("4900"))  # 10020 locked, 10000.2 paid
    assert balances["BTC"] == (D("0.8998"), D("0.3"))  # 0.2 less 0.1 % commission
    # TAKE_PROFIT_LIMIT SELL at 51500: a limit sell at 52000 that does not cross: it rests, working
    assert [o.client_order_id for o in server.set_last_price("BTCUSDT", "51500")] == ["tpl"]
    view = await api.order(origClientOrderId="tpl")
    assert (view["status"], view["isWorking"], view["executedQty"]) == ("NEW", True, "0.00000000")
    server.fill(tpl["orderId"], D("0.3"))
    view = await api.order(origClientOrderId="tpl")
    assert (view["status"], view["cummulativeQuoteQty"]) == ("FILLED", "15600.00000000")
    # TAKE_PROFIT BUY at 49000: a market buy from the book, paid from the released lock
    assert [o.client_order_id for o in server.set_last_price("BTCUSDT", "49000")] == ["tp"]
    view = await api.order(origClientOrderId="tp")
    assert (view["status"], view["cummulativeQuoteQty"]) == ("FILLED", "5000.10000000")
    balances = await api.balances()
    assert balances["USDT"] == (D("100584.1"), D("0"))  # 85099.8 + 15600 - 15.6 + 4900 - 5000.1
    assert balances["BTC"] == (D("0.9997"), D("0"))


async def test_limit_maker_rests_or_is_rejected_when_it_would_take(api: Api, server: BinanceServer) -> None:
    order = {"symbol": "BTCUSDT", "type": "LIMIT_MAKER", "quantity": "0.1", "newOrderRespType": "FULL"}
    for side, price in (("BUY", "50001"), ("SELL", "49999")):
        answer = await api.signed("POST", "/api/v3/order", **order, side=side, price=price)
        assert error(answer) == (400, -2010, "Order would immediately match and take.")
    placed = await api.ok("POST", "/api/v3/order", **order, side="BUY", price="49000")
    assert (placed["status"], placed["type"], placed["timeInForce"], placed["fills"]) == (
        "NEW", "LIMIT_MAKER", "GTC", [],
    )  # fmt: skip
    assert (await api.balances())["USDT"] == (D("95100"), D("4900"))


# ----------------------------------------------------------------------------------------- spot OCO


def sell_oco(list_id: str, qty: str = "0.5", **legs: str) -> dict[str, str]:
    params = {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": qty, "listClientOrderId": list_id,
        "aboveType": "LIMIT_MAKER", "abovePrice": "52000", "aboveClientOrderId": f"{list_id}-tp",
        "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": "48000", "belowPrice": "47900",
        "belowTimeInForce": "GTC", "belowClientOrderId": f"{list_id}-sl",
    }  # fmt: skip
    params.update(legs)
    return params


async def test_sell_oco_locks_once_and_the_triggered_stop_expires_the_limit_maker(
    api: Api, server: BinanceServer
) -> None:
    body = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("L1"))
    assert {k: v for k, v in body.items() if k not in ("orders", "orderReports")} == {
        "orderListId": 1, "contingencyType": "OCO", "listStatusType": "EXEC_STARTED",
        "listOrderStatus": "EXECUTING", "listClientOrderId": "L1", "transactionTime": T0, "symbol": "BTCUSDT",
    }  # fmt: skip
    assert body["orders"] == [
        {"symbol": "BTCUSDT", "orderId": 1001, "clientOrderId": "L1-sl"},
        {"symbol": "BTCUSDT", "orderId": 1002, "clientOrderId": "L1-tp"},
    ]
    sl, tp = body["orderReports"]
    assert (sl["type"], sl["status"], sl["stopPrice"], sl["price"], sl["orderListId"], sl["fills"]) == (
        "STOP_LOSS_LIMIT", "NEW", "48000.00000000", "47900.00000000", 1, [],
    )  # fmt: skip
    assert (tp["type"], tp["status"], tp["price"], tp["orderListId"], "stopPrice" in tp) == (
        "LIMIT_MAKER", "NEW", "52000.00000000", 1, False,
    )  # fmt: skip
    assert (await api.balances())["BTC"] == (D("0.5"), D("0.5"))  # locked once for both legs
    assert [(o["clientOrderId"], o["orderListId"]) for o in await api.ok("GET", "/api/v3/openOrders")] == [
        ("L1-sl", 1), ("L1-tp", 1),
    ]  # fmt: skip
    view = await api.order(origClientOrderId="L1-sl")
    assert (view["isWorking"], view["orderListId"], view["stopPrice"]) == (False, 1, "48000.00000000")
    assert (await api.order(orderId=1002))["isWorking"] is True
    server.set_last_price("BTCUSDT", "48000")  # the stop-limit sells at 47900 or better: the 49999 bid
    sl, tp = await api.order(orderId=1001), await api.order(orderId=1002)
    assert (sl["status"], sl["executedQty"], tp["status"]) == ("FILLED", "0.50000000", "EXPIRED")
    balances = await api.balances()
    assert balances["BTC"] == (D("0.5"), D("0"))
    assert balances["USDT"] == (D("100000") + D("24999.5") - D("24.9995"), D("0"))
    (trade,) = await api.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT")
    assert (trade["orderId"], trade["orderListId"], trade["price"]) == (1001, 1, "49999.00000000")
    answer = await api.signed("DELETE", "/api/v3/orderList", symbol="BTCUSDT", listClientOrderId="L1")
    assert error(answer) == (400, -2011, "Unknown order sent.")


async def test_oco_limit_fill_expires_the_stop_and_cancels_take_the_whole_list(api: Api, server: BinanceServer) -> None:
    stop_market = {"belowType": "STOP_LOSS", "belowStopPrice": "49000", "belowPrice": "", "belowTimeInForce": ""}
    await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("L2", qty="0.4", abovePrice="51000", **stop_market))
    tp = await api.order(origClientOrderId="L2-tp")
    server.fill(tp["orderId"], D("0.1"))  # a partial maker fill of the limit leg
    sl, tp = await api.order(origClientOrderId="L2-sl"), await api.order(origClientOrderId="L2-tp")
    assert (sl["status"], tp["status"], tp["executedQty"]) == ("EXPIRED", "PARTIALLY_FILLED", "0.10000000")
    assert (await api.balances())["BTC"] == (D("0.6"), D("0.3"))
    # canceling the remaining leg answers the list
    body = await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="L2-tp")
    assert (body["contingencyType"], body["listStatusType"], body["listOrderStatus"], body["listClientOrderId"]) == (
        "OCO", "ALL_DONE", "ALL_DONE", "L2",
    )  # fmt: skip
    assert [(r["origClientOrderId"], r["status"]) for r in body["orderReports"]] == [
        ("L2-sl", "EXPIRED"), ("L2-tp", "CANCELED"),
    ]  # fmt: skip
    assert (await api.balances())["BTC"] == (D("0.9"), D("0"))
    # DELETE orderList by id cancels both legs and gives the lock back
    placed = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("L3", qty="0.2"))
    assert (await api.balances())["BTC"] == (D("0.7"), D("0.2"))
    body = await api.ok("DELETE", "/api/v3/orderList", symbol="BTCUSDT", orderListId=placed["orderListId"])
    assert [r["status"] for r in body["orderReports"]] == ["CANCELED", "CANCELED"]
    assert (await api.balances())["BTC"] == (D("0.9"), D("0"))
    # canceling one leg by DELETE order cancels the other too
    await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("L4", qty="0.2"))
    body = await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="L4-sl")
    assert [(r["clientOrderId"], r["origClientOrderId"], r["status"]) for r in body["orderReports"]] == [
        (f"cancel-{body['orders'][0]['orderId']}", "L4-sl", "CANCELED"),
        (f"cancel-{body['orders'][1]['orderId']}", "L4-tp", "CANCELED"),
    ]
    assert (await api.order(origClientOrderId="L4-tp"))["status"] == "CANCELED"
    assert await api.ok("GET", "/api/v3/openOrders") == []
    # a client order id in use by an open order is refused, as for single orders
    await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
                 quantity="0.1", price="55000", newClientOrderId="taken")  # fmt: skip
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("L5", qty="0.2", aboveClientOrderId="taken"))
    assert error(answer) == (400, -2010, "Duplicate order sent.")
    answer = await api.signed(
        "POST",
        "/api/v3/orderList/oco",
        **sell_oco("L5", qty="0.2", aboveClientOrderId="same", belowClientOrderId="same"),
    )
    assert error(answer) == (400, -2010, "Duplicate order sent.")
    answer = await api.signed("DELETE", "/api/v3/orderList", symbol="BTCUSDT")
    assert error(answer) == (
        400, -1102, "Param 'orderListId' or 'listClientOrderId' must be sent, but both were empty/null!",
    )  # fmt: skip


async def test_buy_oco_locks_the_highest_price_and_a_triggered_take_profit_expires_the_stop(
    api: Api, server: BinanceServer
) -> None:
    buy = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.1", "aboveType": "STOP_LOSS",
           "aboveStopPrice": "52000"}  # fmt: skip
    await api.ok("POST", "/api/v3/orderList/oco", **buy, belowType="LIMIT_MAKER", belowPrice="48000",
                 listClientOrderId="B1")  # fmt: skip
    assert (await api.balances())["USDT"] == (D("94800"), D("5200"))  # 0.1 x 52000, once
    await api.ok("DELETE", "/api/v3/orderList", symbol="BTCUSDT", listClientOrderId="B1")
    assert (await api.balances())["USDT"] == (D("100000"), D("0"))
    body = await api.ok("POST", "/api/v3/orderList/oco", **buy, belowType="TAKE_PROFIT", belowStopPrice="48000",
                        listClientOrderId="B2")  # fmt: skip
    below, above = (r["orderId"] for r in body["orders"])
    server.set_last_price("BTCUSDT", "48000")  # the take-profit buys at market
    tp, sl = await api.order(orderId=below), await api.order(orderId=above)
    assert (tp["type"], tp["status"], tp["cummulativeQuoteQty"], sl["status"]) == (
        "TAKE_PROFIT", "FILLED", "5000.10000000", "EXPIRED",
    )  # fmt: skip
    balances = await api.balances()
    assert (balances["USDT"], balances["BTC"]) == ((D("94999.9"), D("0")), (D("1.0999"), D("0")))


@pytest.mark.parametrize(
    ("side", "above", "below", "code", "msg"),
    [
        ("SELL", "STOP_LOSS", "STOP_LOSS", -1197, "A stop loss order in a sell OCO must be below."),
        ("SELL", "LIMIT_MAKER", "LIMIT_MAKER", -1168, "At least one OCO order must be contingent."),
        ("SELL", "TAKE_PROFIT", "LIMIT_MAKER", -1166, "A limit order in a sell OCO must be above."),
        ("SELL", "LIMIT_MAKER", "TAKE_PROFIT", -1199, "A take profit order in a sell OCO must be above."),
        ("BUY", "LIMIT_MAKER", "STOP_LOSS", -1165, "A limit order in a buy OCO must be below."),
        ("BUY", "STOP_LOSS", "STOP_LOSS", -1196, "A stop loss order in a buy OCO must be above."),
        ("BUY", "TAKE_PROFIT", "LIMIT_MAKER", -1198, "A take profit order in a buy OCO must be below."),
        ("SELL", "LIMIT", "STOP_LOSS", -1158, "Order type not supported in OCO."),
    ],
)
async def test_oco_leg_types_must_fit_the_side(
    api: Api, server: BinanceServer, side: str, above: str, below: str, code: int, msg: str
) -> None:
    params = {"symbol": "BTCUSDT", "side": side, "quantity": "0.1", "aboveType": above, "belowType": below,
              "abovePrice": "52000", "aboveStopPrice": "52000", "belowPrice": "48000",
              "belowStopPrice": "48000"}  # fmt: skip
    answer = await api.signed("POST", "/api/v3/orderList/oco", **params)
    assert error(answer) == (400, code, msg)
    assert server.orders == {} and (await api.balances())["BTC"] == (D("1"), D("0"))


async def test_oco_prices_must_surround_the_last_price(api: Api, server: BinanceServer) -> None:
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("R1", abovePrice="49500"))
    assert error(answer) == (400, -2010, "The relationship of the prices for the orders is not correct.")
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("R2", belowStopPrice="50000"))
    assert error(answer) == (400, -2010, "The relationship of the prices for the orders is not correct.")
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("R3", belowStopPrice=""))
    assert error(answer) == (
        400, -1102, "Mandatory parameter 'belowStopPrice' was not sent, was empty/null, or malformed.",
    )  # fmt: skip
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("R4", qty="2"))
    assert error(answer) == (400, -2010, "Account has insufficient balance for requested action.")
    assert server.orders == {}


# ----------------------------------------------------------------------------------------- futures algo orders


async def test_futures_order_refuses_the_conditional_types(api: Api, server: BinanceServer) -> None:
    fut = {"symbol": "BTCUSDT", "quantity": "0.1", "side": "SELL", "stopPrice": "49000", "price": "49000"}
    for kind in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
        assert error(await api.signed("POST", "/fapi/v1/order", **fut, type=kind)) == ALGO_ONLY, kind
    for kind in ("TRAILING_STOP_MARKET", "STOP_LOSS", "NOPE"):
        answer = await api.signed("POST", "/fapi/v1/order", **fut, type=kind)
        assert error(answer) == (400, -1116, "Invalid orderType."), kind
    assert (server.futures.orders, server.futures.algos, server.futures.trades) == ({}, {}, [])
    # the plain types are as before
    body = await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", quantity="0.1", side="BUY", type="MARKET")
    assert (body["status"], body["type"], body["origType"], body["avgPrice"]) == (
        "FILLED", "MARKET", "MARKET", "50001.00000000",
    )  # fmt: skip


async def test_futures_stops_trigger_on_the_last_or_the_mark_price(api: Api, server: BinanceServer) -> None:
    fut = {"symbol": "BTCUSDT", "quantity": "0.1"}
    await api.ok("POST", "/fapi/v1/order", **fut, side="BUY", type="MARKET")  # long 0.1 at 50001
    placed = await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, quantity="0.1", side="SELL", type="STOP_MARKET",
                          triggerPrice="49000", reduceOnly="true", clientAlgoId="sl")  # fmt: skip
    assert placed == algo_view()
    assert await api.open_algos(symbol="BTCUSDT") == ["sl"]
    assert await api.ok("GET", "/fapi/v1/openOrders", symbol="BTCUSDT") == []  # it waits in the Algo Service
    assert server.futures.set_mark_price("BTCUSDT", "48000") == []  # a CONTRACT_PRICE stop ignores the mark
    server.futures.set_mark_price("BTCUSDT", "50000")
    (order,) = server.futures.set_last_price("BTCUSDT", "49000")
    assert (order.order_id, order.client_order_id) == (1002, "algo-3001")  # not the clientAlgoId
    view = await api.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=1002)
    keys = ("status", "type", "origType", "stopPrice", "avgPrice", "reduceOnly", "workingType", "clientOrderId")
    assert [view[k] for k in keys] == [
        "FILLED", "MARKET", "STOP_MARKET", "49000.00000000", "49999.00000000", True, "CONTRACT_PRICE", "algo-3001",
    ]  # fmt: skip
    assert await api.algo(clientAlgoId="sl") == algo_view(
        algoStatus="FINISHED", actualOrderId="1002", actualPrice="49999.00000000", triggerTime=T0,
    )  # fmt: skip
    assert await api.open_algos() == []
    assert (await api.positions())["BOTH"] == (D("0"), D("0"))
    assert await api.wallet() == D("9995.8")  # -0.2 realized, 2.00004 + 1.99996 commission
    # a MARK_PRICE take-profit ignores the contract price
    await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, quantity="0.1", side="BUY", type="TAKE_PROFIT_MARKET",
                 triggerPrice="49000", workingType="MARK_PRICE", clientAlgoId="tp")  # fmt: skip
    assert server.futures.set_last_price("BTCUSDT", "48000") == []
    assert [o.client_order_id for o in server.futures.set_mark_price("BTCUSDT", "49000")] == ["algo-3002"]
    tp = await api.algo(clientAlgoId="tp")
    assert (tp["algoStatus"], tp["workingType"], tp["actualOrderId"], tp["actualPrice"]) == (
        "FINISHED", "MARK_PRICE", "1003", "50001.00000000",
    )  # fmt: skip
    view = await api.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="algo-3002")
    assert (view["status"], view["type"], view["origType"], view["workingType"]) == (
        "FILLED", "MARKET", "TAKE_PROFIT_MARKET", "MARK_PRICE",
    )  # fmt: skip
    assert (await api.positions())["BOTH"] == (D("0.1"), D("50001"))
    # STOP: a limit order at its price once triggered
    server.futures.set_last_price("BTCUSDT", "50000")
    await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, quantity="0.05", side="SELL", type="STOP", price="49990",
                 triggerPrice="49500", clientAlgoId="stop")  # fmt: skip
    (order,) = server.futures.set_last_price("BTCUSDT", "49500")
    view = await api.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=order.order_id)
    assert (view["status"], view["type"], view["origType"], view["price"], view["avgPrice"]) == (
        "FILLED", "LIMIT", "STOP", "49990.00000000", "49999.00000000",
    )  # fmt: skip
    assert (await api.algo(clientAlgoId="stop"))["algoStatus"] == "FINISHED"
    assert (await api.positions())["BOTH"] == (D("0.05"), D("50001"))
    # a reduce-only stop that would no longer reduce is rejected when triggered: no order, no trade
    await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, quantity="0.05", side="SELL", type="STOP_MARKET",
                 triggerPrice="49000", reduceOnly="true", clientAlgoId="late")  # fmt: skip
    await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", quantity="0.05", side="SELL", type="MARKET",
                 reduceOnly="true")  # fmt: skip
    orders, trades = len(server.futures.orders), len(server.futures.trades)
    assert server.futures.set_last_price("BTCUSDT", "49000") == []
    late = await api.algo(clientAlgoId="late")
    assert (late["algoStatus"], late["actualOrderId"], late["actualPrice"], late["triggerTime"]) == (
        "REJECTED", "", "0.00000000", T0,
    )  # fmt: skip
    assert (len(server.futures.orders), len(server.futures.trades)) == (orders, trades)
    assert server.futures.algo("late").status == "REJECTED"
    assert (await api.positions())["BOTH"] == (D("0"), D("0"))
    assert await api.wallet() == D("9991.6")


async def test_algo_order_parameters_are_validated(api: Api, server: BinanceServer) -> None:
    await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", quantity="0.1", side="BUY", type="MARKET")  # long 0.1
    server.futures.set_mark_price("BTCUSDT", "48500")  # the last price stays 50000 (the mid of the book)
    base = {**ALGO, "side": "SELL", "type": "STOP_MARKET", "quantity": "0.1", "triggerPrice": "49000"}
    legal = r"'^[\.A-Z\:/a-z0-9_-]{1,36}$'"
    cases: list[tuple[dict[str, str | None], tuple[int, str]]] = [
        ({"algoType": None}, (-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")),
        ({"algoType": "TWAP"}, (-1116, "Invalid algoType.")),
        ({"symbol": "NOPE"}, (-1121, "Invalid symbol.")),
        ({"side": None}, (-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")),
        ({"type": None}, (-1116, "Invalid orderType.")),
        ({"type": "LIMIT", "price": "49000"}, (-1116, "Invalid orderType.")),
        ({"type": "MARKET"}, (-1116, "Invalid orderType.")),
        ({"type": "TRAILING_STOP_MARKET"}, (-1116, "Invalid orderType.")),
        ({"quantity": None}, (-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")),
        ({"type": "STOP"}, (-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")),
        ({"type": "TAKE_PROFIT", "triggerPrice": "51000"},
         (-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")),
        ({"triggerPrice": None},
         (-1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.")),
        ({"stopPrice": "49000", "triggerPrice": None},
         (-1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.")),
        ({"timeInForce": "GTD"}, (-1115, "Invalid timeInForce.")),
        ({"workingType": "INDEX_PRICE"}, (-4031, "Invalid parameter working type")),
        ({"positionSide": "UP"}, (-4060, "Invalid position side.")),
        ({"positionSide": "LONG"}, (-4061, "Order's position side does not match user's setting.")),
        ({"clientAlgoId": "bad~id"},
         (-1100, f"Illegal characters found in parameter 'clientAlgoId'; legal range is {legal}.")),
        ({"clientAlgoId": "x" * 37},
         (-1100, f"Illegal characters found in parameter 'clientAlgoId'; legal range is {legal}.")),
        ({"triggerPrice": "49000.05"}, (-4014, "Price not increased by tick size.")),
        ({"type": "STOP", "price": "48999.95"}, (-4014, "Price not increased by tick size.")),
        ({"quantity": "0.0005"}, (-4003, "Quantity less than or equal to zero.")),
        ({"quantity": "0.1005"}, (-4003, "Quantity less than or equal to zero.")),
        ({"reduceOnly": "true", "quantity": "0.2"}, (-2022, "ReduceOnly Order is rejected.")),
        ({"reduceOnly": "true", "side": "BUY", "triggerPrice": "51000"}, (-2022, "ReduceOnly Order is rejected.")),
        ({"side": "BUY", "triggerPrice": "51000", "quantity": "0.001"},
         (-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).")),
        ({"type": "STOP", "price": "99000", "triggerPrice": "99000", "side": "BUY", "quantity": "0.001"},
         (-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).")),
        ({"triggerPrice": "50000"}, (-2021, "Order would immediately trigger.")),  # the last price 50000
        ({"type": "TAKE_PROFIT_MARKET"}, (-2021, "Order would immediately trigger.")),
        ({"side": "BUY", "type": "STOP", "price": "49000"}, (-2021, "Order would immediately trigger.")),
        ({"side": "BUY", "type": "TAKE_PROFIT_MARKET", "triggerPrice": "51000"},
         (-2021, "Order would immediately trigger.")),
        ({"workingType": "MARK_PRICE"}, (-2021, "Order would immediately trigger.")),  # the mark 48500
    ]  # fmt: skip
    for changes, expected in cases:
        params = {k: v for k, v in {**base, **changes}.items() if v is not None}
        answer = await api.signed("POST", "/fapi/v1/algoOrder", **params)
        assert (answer.status, answer.error) == (400, expected), changes
    assert server.futures.algos == {}
    # no margin is needed to place one; small reduce-only ones and ids of 36 legal characters are fine
    ok = await api.ok("POST", "/fapi/v1/algoOrder", **{**base, "quantity": "0.001"}, reduceOnly="true",
                      clientAlgoId="A.b:c/d_e-" + "9" * 25, newOrderRespType="RESULT")  # fmt: skip
    assert (ok["algoStatus"], ok["clientAlgoId"], ok["reduceOnly"], ok["quantity"]) == (
        "NEW", "A.b:c/d_e-9999999999999999999999999", True, "0.00100000",
    )  # fmt: skip
    tp = {**base, "type": "TAKE_PROFIT", "triggerPrice": "51000"}
    default = await api.ok("POST", "/fapi/v1/algoOrder", **tp, price="51000.5", timeInForce="IOC",
                           workingType="MARK_PRICE")  # fmt: skip
    assert (default["algoId"], default["clientAlgoId"], default["price"], default["timeInForce"]) == (
        3002, "x-algo-3002", "51000.50000000", "IOC",
    )  # fmt: skip
    # hedge mode: reduceOnly is not sent, the position side must be, and a closing order needs its position
    for algo_id in (3001, 3002):
        await api.ok("DELETE", "/fapi/v1/algoOrder", algoId=algo_id)
    await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", quantity="0.1", side="SELL", type="MARKET")
    await api.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition="true")
    for changes, expected in [
        ({"positionSide": "LONG", "reduceOnly": "false"}, (-1106, "Parameter 'reduceOnly' sent when not required.")),
        ({}, (-4061, "Order's position side does not match user's setting.")),
        ({"positionSide": "BOTH"}, (-4061, "Order's position side does not match user's setting.")),
        ({"positionSide": "LONG"}, (-2022, "ReduceOnly Order is rejected.")),
        ({"positionSide": "SHORT", "side": "BUY", "triggerPrice": "51000"}, (-2022, "ReduceOnly Order is rejected.")),
    ]:  # fmt: skip
        answer = await api.signed("POST", "/fapi/v1/algoOrder", **{**base, **changes})
        assert (answer.status, answer.error) == (400, expected), changes
    assert len(server.futures.algos) == 2


async def test_client_algo_id_is_unique_among_new_algo_orders_and_cancel(api: Api, server: BinanceServer) -> None:
    stop = {**ALGO, "side": "BUY", "type": "STOP_MARKET", "quantity": "0.01", "triggerPrice": "51000"}
    first = await api.ok("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="dup")
    assert (first["algoId"], first["algoStatus"]) == (3001, "NEW")
    answer = await api.signed("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="dup")
    assert error(answer) == (400, -4116, "ClientOrderId is duplicated.")
    server.frozen_ms = T0 + 1000
    canceled = await api.ok("DELETE", "/fapi/v1/algoOrder", clientAlgoId="dup")
    assert canceled == {"algoId": 3001, "clientAlgoId": "dup", "code": "200", "msg": "success"}
    assert await api.algo(algoId=3001) == {**first, "algoStatus": "CANCELED", "updateTime": T0 + 1000}
    for params in ({"clientAlgoId": "dup"}, {"algoId": 3001}, {"algoId": 4242}, {"clientAlgoId": "nope"}):
        answer = await api.signed("DELETE", "/fapi/v1/algoOrder", **params)
        assert error(answer) == (400, -2011, "Unknown order sent."), params
    answer = await api.signed("DELETE", "/fapi/v1/algoOrder")
    assert error(answer) == (400, -1102, "Mandatory parameter 'algoId' was not sent, was empty/null, or malformed.")
    # canceled: its clientAlgoId is free again; a query by it finds the newest
    again = await api.ok("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="dup")
    assert (again["algoId"], again["clientAlgoId"], again["createTime"]) == (3002, "dup", T0 + 1000)
    assert (await api.algo(clientAlgoId="dup"))["algoId"] == 3002
    assert (await api.algo(algoId=3001))["algoStatus"] == "CANCELED"
    assert server.futures.algo("dup").algo_id == 3002
    # a canceled algo order never triggers; a triggered one frees its id and can no longer be canceled
    (order,) = server.futures.set_last_price("BTCUSDT", "51000")
    assert (order.client_order_id, server.futures.algos[3001].actual_order_id) == ("algo-3002", None)
    answer = await api.signed("DELETE", "/fapi/v1/algoOrder", algoId=3002)
    assert error(answer) == (400, -2011, "Unknown order sent.")
    third = await api.ok("POST", "/fapi/v1/algoOrder", **{**stop, "triggerPrice": "52000"}, clientAlgoId="dup")
    assert (third["algoId"], third["algoStatus"]) == (3003, "NEW")


async def test_algo_queries_and_a_triggered_stop_resting_as_its_actual_limit_order(
    api: Api, server: BinanceServer
) -> None:
    a = await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, side="SELL", type="STOP", quantity="0.1", price="50500",
                     triggerPrice="49500", clientAlgoId="a")  # fmt: skip
    b = await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, side="BUY", type="STOP_MARKET", quantity="0.1",
                     triggerPrice="50500", workingType="MARK_PRICE", clientAlgoId="b")  # fmt: skip
    assert a == algo_view(algoId=3001, clientAlgoId="a", orderType="STOP", price="50500.00000000",
                          triggerPrice="49500.00000000", reduceOnly=False)  # fmt: skip
    assert b == algo_view(algoId=3002, clientAlgoId="b", side="BUY", triggerPrice="50500.00000000",
                          workingType="MARK_PRICE", reduceOnly=False)  # fmt: skip
    assert (await api.algo(algoId=3001), await api.algo(clientAlgoId="b")) == (a, b)
    for params in ({"algoId": 9999}, {"clientAlgoId": "zzz"}):
        answer = await api.signed("GET", "/fapi/v1/algoOrder", **params)
        assert error(answer) == (400, -2013, "Order does not exist."), params
    answer = await api.signed("GET", "/fapi/v1/algoOrder")
    assert error(answer) == (400, -1102, "Mandatory parameter 'algoId' was not sent, was empty/null, or malformed.")
    assert await api.ok("GET", "/fapi/v1/openAlgoOrders", symbol="BTCUSDT") == [a, b]
    assert await api.ok("GET", "/fapi/v1/openAlgoOrders") == [a, b]
    assert await api.open_algos(symbol="BTCUSDT", algoType="CONDITIONAL") == ["a", "b"]
    answer = await api.signed("GET", "/fapi/v1/openAlgoOrders", symbol="NOPE")
    assert error(answer) == (400, -1121, "Invalid symbol.")
    account = await api.ok("GET", "/fapi/v2/account")  # waiting algo orders hold no margin
    assert (account["totalInitialMargin"], account["availableBalance"]) == ("0.00000000", "10000.00000000")
    # triggered: a SELL LIMIT at 50500 that rests; the algo leaves openAlgoOrders, its order is in openOrders
    (order,) = server.futures.set_last_price("BTCUSDT", "49500")
    assert (order.order_id, order.client_order_id) == (1001, "algo-3001")
    assert await api.open_algos() == ["b"]
    (resting,) = await api.ok("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")
    keys = ("orderId", "clientOrderId", "status", "type", "origType", "price", "stopPrice", "origQty", "timeInForce")
    assert [resting[k] for k in keys] == [
        1001, "algo-3001", "NEW", "LIMIT", "STOP", "50500.00000000", "49500.00000000", "0.10000000", "GTC",
    ]  # fmt: skip
    assert resting["clientOrderId"] != a["clientAlgoId"]
    triggered = {**a, "algoStatus": "TRIGGERED", "actualOrderId": "1001", "triggerTime": T0}
    assert await api.algo(clientAlgoId="a") == triggered
    account = await api.ok("GET", "/fapi/v2/account")  # the resting actual order does: 0.1 x 50500 / 20
    assert account["totalInitialMargin"] == "252.50000000"
    server.futures.fill(1001, D("0.04"))
    assert await api.algo(algoId=3001) == {**triggered, "actualPrice": "50500.00000000"}  # partly filled, open
    server.frozen_ms = T0 + 5000
    server.futures.fill(1001, D("0.06"), D("50600"))
    assert await api.algo(algoId=3001) == {
        **triggered, "algoStatus": "FINISHED", "actualPrice": "50560.00000000", "updateTime": T0 + 5000,
    }  # fmt: skip  # (0.04 x 50500 + 0.06 x 50600) / 0.1
    assert await api.ok("GET", "/fapi/v1/openOrders") == []
    assert (await api.positions())["BOTH"] == (D("-0.1"), D("50560"))
    # a STOP_MARKET trigger: its actual MARKET order fills at once, FINISHED, trades under the actual orderId
    (order,) = server.futures.set_mark_price("BTCUSDT", "50500")
    assert (order.order_id, order.client_order_id, order.status) == (1002, "algo-3002", "FILLED")
    assert await api.algo(clientAlgoId="b") == {
        **b, "algoStatus": "FINISHED", "actualOrderId": "1002", "actualPrice": "50001.00000000",
        "triggerTime": T0 + 5000, "updateTime": T0 + 5000,
    }  # fmt: skip
    trades = await api.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", orderId=1002)
    assert [(t["orderId"], t["side"], t["price"], t["qty"], t["realizedPnl"]) for t in trades] == [
        (1002, "BUY", "50001.00000000", "0.10000000", "55.90000000"),
    ]
    assert await api.open_algos() == []
    assert (await api.positions())["BOTH"] == (D("0"), D("0"))


async def test_margin_is_checked_when_an_algo_order_triggers_not_when_placed(api: Api, server: BinanceServer) -> None:
    # a regular order needing more margin than the 10000 available is refused at once ...
    answer = await api.signed("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                              timeInForce="GTC", quantity="6", price="40000")  # fmt: skip
    assert error(answer) == (400, -2019, "Margin is insufficient.")
    # ... an algo order is placed: the Algo Service checks margin when it triggers
    big = await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, side="BUY", type="STOP_MARKET", quantity="6",
                       triggerPrice="50500", clientAlgoId="big")  # fmt: skip
    small = await api.ok("POST", "/fapi/v1/algoOrder", **ALGO, side="BUY", type="STOP", quantity="0.1",
                         price="50600", triggerPrice="50500", clientAlgoId="small")  # fmt: skip
    assert (big["algoStatus"], small["algoStatus"]) == ("NEW", "NEW")
    orders = await api.ok("GET", "/fapi/v2/account")
    assert orders["availableBalance"] == "10000.00000000"
    # 6 x 50001 / 20 = 15000.3 > 10000: rejected, nothing placed; the small one opens 0.1 at the ask
    triggered = server.futures.set_last_price("BTCUSDT", "50500")
    assert [o.client_order_id for o in triggered] == ["algo-3002"]
    view = await api.algo(clientAlgoId="big")
    assert (view["algoStatus"], view["actualOrderId"], view["triggerTime"]) == ("REJECTED", "", T0)
    view = await api.algo(clientAlgoId="small")
    assert (view["algoStatus"], view["actualOrderId"], view["actualPrice"]) == ("FINISHED", "1001", "50001.00000000")
    assert list(server.futures.orders) == [1001] and len(server.futures.trades) == 1
    assert await api.positions() == {"BOTH": (D("0.1"), D("50001"))}
    # a REJECTED algo order is no longer open and cannot be canceled
    assert await api.open_algos() == []
    answer = await api.signed("DELETE", "/fapi/v1/algoOrder", clientAlgoId="big")
    assert error(answer) == (400, -2011, "Unknown order sent.")


async def test_hooks_work_on_the_algo_routes(api: Api, server: BinanceServer) -> None:
    stop = {**ALGO, "side": "BUY", "type": "STOP_MARKET", "quantity": "0.01", "triggerPrice": "51000"}
    server.fail_next("fapi/v1/algoOrder", -1008, "Server is currently overloaded with other requests.", 503)
    answer = await api.signed("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="h")
    assert error(answer) == (503, -1008, "Server is currently overloaded with other requests.")
    server.rate_limit_next("fapi/v1/openAlgoOrders", retry_after_s=3)
    answer = await api.signed("GET", "/fapi/v1/openAlgoOrders")
    assert (answer.status, answer.error[0], answer.headers["Retry-After"], answer.weight) == (429, -1003, "3", 0)
    server.drop_next("fapi/v1/algoOrder", max_s=5)  # never processed, its answer held back
    server.held.clear()
    task = asyncio.create_task(api.signed("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="h"))
    await server.held.wait()
    assert server.futures.algos == {}  # none of these placed anything
    server.release()
    answer = await task
    assert (answer.status, answer.error[0]) == (408, -1007)
    server.hold_next("fapi/v1/algoOrder", max_s=5)  # processed, its answer held back
    server.held.clear()
    task = asyncio.create_task(api.signed("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="h"))
    await server.held.wait()
    assert server.futures.algo("h").status == "NEW"
    server.release()
    answer = await task
    assert (answer.status, answer.body["clientAlgoId"]) == (200, "h")
    assert server.count_requests("POST", "fapi/v1/algoOrder") == 3


# ----------------------------------------------------------------------------------------- futures hedge mode


async def test_hedge_mode_long_and_short_positions_per_symbol(api: Api, server: BinanceServer) -> None:
    assert (await api.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition="true"))["code"] == 200
    assert (await api.ok("GET", "/fapi/v1/positionSide/dual")) == {"dualSidePosition": True}
    mkt = {"symbol": "BTCUSDT", "type": "MARKET"}
    for params, expected in [
        ({"side": "BUY", "quantity": "0.2"}, (-4061, "Order's position side does not match user's setting.")),
        ({"side": "BUY", "quantity": "0.2", "positionSide": "BOTH"},
         (-4061, "Order's position side does not match user's setting.")),
        ({"side": "BUY", "quantity": "0.2", "positionSide": "LONG", "reduceOnly": "false"},
         (-1106, "Parameter 'reduceOnly' sent when not required.")),
        ({"side": "BUY", "quantity": "0.2", "positionSide": "UP"}, (-4060, "Invalid position side.")),
        ({"side": "SELL", "quantity": "0.1", "positionSide": "LONG"}, (-2022, "ReduceOnly Order is rejected.")),
    ]:  # fmt: skip
        answer = await api.signed("POST", "/fapi/v1/order", **mkt, **params)
        assert answer.error == expected, params
    await api.ok("POST", "/fapi/v1/order", **mkt, side="BUY", quantity="0.2", positionSide="LONG")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", quantity="0.1", positionSide="SHORT",
                 newClientOrderId="short")  # fmt: skip
    assert await api.positions() == {"LONG": (D("0.2"), D("50001")), "SHORT": (D("-0.1"), D("49999"))}
    answer = await api.signed("POST", "/fapi/v1/order", **mkt, side="SELL", quantity="0.3", positionSide="LONG")
    assert error(answer) == (400, -2022, "ReduceOnly Order is rejected.")
    answer = await api.signed("POST", "/fapi/v1/order", **mkt, side="BUY", quantity="0.2", positionSide="SHORT")
    assert error(answer) == (400, -2022, "ReduceOnly Order is rejected.")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", quantity="0.1", positionSide="LONG")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="BUY", quantity="0.1", positionSide="SHORT")
    assert await api.positions() == {"LONG": (D("0.1"), D("50001")), "SHORT": (D("0"), D("0"))}
    view = await api.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="short")
    assert (view["positionSide"], view["side"], view["status"]) == ("SHORT", "SELL", "FILLED")
    trades = await api.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    assert [(t["side"], t["positionSide"], t["price"], t["realizedPnl"]) for t in trades] == [
        ("BUY", "LONG", "50001.00000000", "0.00000000"),
        ("SELL", "SHORT", "49999.00000000", "0.00000000"),
        ("SELL", "LONG", "49999.00000000", "-0.20000000"),
        ("BUY", "SHORT", "50001.00000000", "-0.20000000"),
    ]
    assert await api.wallet() == D("10000") - D("0.4") - D("10.00004")  # realized, then 0.04 % commission
    # the position mode cannot change with a position, nor with open orders
    answer = await api.signed("POST", "/fapi/v1/positionSide/dual", dualSidePosition="false")
    assert error(answer) == (400, -4068, "Position side cannot be changed if there exists position.")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", quantity="0.1", positionSide="LONG")
    await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                 quantity="0.01", price="40000", positionSide="LONG", newClientOrderId="rest")  # fmt: skip
    answer = await api.signed("POST", "/fapi/v1/positionSide/dual", dualSidePosition="false")
    assert error(answer) == (400, -4067, "Position side cannot be changed if there exists open orders.")
    await api.ok("DELETE", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="rest")
    await api.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition="false")
    assert await api.positions() == {"BOTH": (D("0"), D("0"))}
    answer = await api.signed("POST", "/fapi/v1/order", **mkt, side="BUY", quantity="0.1", positionSide="LONG")
    assert error(answer) == (400, -4061, "Order's position side does not match user's setting.")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="BUY", quantity="0.1", positionSide="BOTH")
    assert await api.positions() == {"BOTH": (D("0.1"), D("50001"))}


async def test_hedge_mode_stop_closes_its_side_only(api: Api, server: BinanceServer) -> None:
    await api.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition="true")
    mkt = {"symbol": "BTCUSDT", "type": "MARKET", "quantity": "0.1"}
    await api.ok("POST", "/fapi/v1/order", **mkt, side="BUY", positionSide="LONG")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", positionSide="SHORT")
    cover = {**ALGO, "quantity": "0.1", "side": "BUY", "type": "STOP_MARKET", "positionSide": "SHORT"}
    await api.ok("POST", "/fapi/v1/algoOrder", **cover, triggerPrice="51000", clientAlgoId="cover")
    (order,) = server.futures.set_last_price("BTCUSDT", "51000")
    view = await api.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=order.order_id)
    assert (view["status"], view["positionSide"], view["reduceOnly"], view["clientOrderId"]) == (
        "FILLED", "SHORT", False, "algo-3001",
    )  # fmt: skip
    algo = await api.algo(clientAlgoId="cover")
    assert (algo["algoStatus"], algo["positionSide"], algo["actualOrderId"]) == ("FINISHED", "SHORT", "1003")
    assert await api.positions() == {"LONG": (D("0.1"), D("50001")), "SHORT": (D("0"), D("0"))}
    # a closing algo order whose side is flat by then is rejected when it triggers
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", positionSide="SHORT")
    await api.ok("POST", "/fapi/v1/algoOrder", **cover, triggerPrice="52000", clientAlgoId="late")
    # the position mode cannot change while an algo order waits
    await api.ok("POST", "/fapi/v1/order", **mkt, side="BUY", positionSide="SHORT")
    await api.ok("POST", "/fapi/v1/order", **mkt, side="SELL", positionSide="LONG")
    answer = await api.signed("POST", "/fapi/v1/positionSide/dual", dualSidePosition="false")
    assert error(answer) == (400, -4067, "Position side cannot be changed if there exists open orders.")
    trades = len(server.futures.trades)
    assert server.futures.set_last_price("BTCUSDT", "52000") == []
    assert (await api.algo(clientAlgoId="late"))["algoStatus"] == "REJECTED"
    assert len(server.futures.trades) == trades
    await api.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition="false")


# ----------------------------------------------------------------------------------------- trade queries


async def test_spot_my_trades_filters_and_limits(api: Api, server: BinanceServer) -> None:
    times = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 25 * HOUR]
    order_ids = []
    for t in times:
        server.frozen_ms = t
        body = await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
        order_ids.append(body["orderId"])

    async def ids(**params: Any) -> list[int]:
        return [t["id"] for t in await api.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT", **params)]

    everything = await api.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT")
    assert [(t["id"], t["time"], t["orderId"]) for t in everything] == list(
        zip([5001, 5002, 5003, 5004, 5005], times, order_ids, strict=True)
    )
    assert await ids(limit=2) == [5004, 5005]  # the most recent
    assert await ids(fromId=5002, limit=2) == [5002, 5003]
    assert await ids(orderId=order_ids[2]) == [5003]
    assert await ids(orderId=order_ids[2], fromId=5004) == []
    assert await ids(startTime=T0 + HOUR, endTime=T0 + 3 * HOUR) == [5002, 5003, 5004]
    assert await ids(startTime=T0 + 2 * HOUR, limit=2) == [5003, 5004]  # from startTime
    assert await ids(endTime=T0 + HOUR) == [5001, 5002]
    assert await ids(limit=5000) == [5001, 5002, 5003, 5004, 5005]  # at most 1000
    answer = await api.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT", startTime=T0, endTime=T0 + 25 * HOUR)
    assert error(answer) == (400, -1127, "More than 24 hours between startTime and endTime.")
    answer = await api.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT", orderId=order_ids[0], startTime=T0)
    assert error(answer) == (400, -1128, "Combination of optional parameters invalid.")
    answer = await api.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT", fromId="x")
    assert answer.error[0] == -1100


async def test_futures_user_trades_filters_and_limits(api: Api, server: BinanceServer) -> None:
    times = [T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 8 * DAY]
    order_ids = []
    for t in times:
        server.frozen_ms = t
        body = await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
        order_ids.append(body["orderId"])

    async def ids(**params: Any) -> list[int]:
        return [t["id"] for t in await api.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", **params)]

    rows = await api.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")  # the last 7 days
    assert [(t["id"], t["time"], t["positionSide"]) for t in rows] == [
        (5002, T0 + DAY, "BOTH"), (5003, T0 + 2 * DAY, "BOTH"), (5004, T0 + 3 * DAY, "BOTH"),
        (5005, T0 + 8 * DAY, "BOTH"),
    ]  # fmt: skip
    assert await ids(limit=2) == [5004, 5005]
    assert await ids(fromId=5001) == [5001, 5002, 5003, 5004, 5005]
    assert await ids(fromId=5002, limit=2) == [5002, 5003]
    assert await ids(orderId=order_ids[0]) == [5001]
    assert await ids(startTime=T0) == [5001, 5002, 5003, 5004]  # the 7 days from startTime
    assert await ids(endTime=T0 + 2 * DAY) == [5001, 5002, 5003]  # the 7 days before endTime
    assert await ids(startTime=T0 + DAY, endTime=T0 + 3 * DAY, limit=2) == [5002, 5003]
    answer = await api.signed("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", startTime=T0, endTime=T0 + 8 * DAY)
    assert error(answer) == (400, -1127, "More than 168 hours between startTime and endTime.")
    answer = await api.signed("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", fromId=5001, startTime=T0)
    assert error(answer) == (400, -1128, "Combination of optional parameters invalid.")
    answer = await api.signed("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", startTime=T0 + DAY, endTime=T0)
    assert error(answer) == (400, -1023, "Start time is greater than end time.")


# ----------------------------------------------------------------------------------------- documented shapes
# New order (TRADE), Query order, Cancel order, New Order list - OCO, Cancel Order list: the responses in
# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints (and account endpoints)

ACK = {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
RESULT = ACK | {
    "price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status", "timeInForce", "type",
    "side", "workingTime", "selfTradePreventionMode",
}  # fmt: skip
QUERIED = {
    "symbol", "orderId", "orderListId", "clientOrderId", "price", "origQty", "executedQty", "cummulativeQuoteQty",
    "status", "timeInForce", "type", "side", "stopPrice", "icebergQty", "time", "updateTime", "isWorking",
    "workingTime", "origQuoteOrderQty", "selfTradePreventionMode",
}  # fmt: skip
CANCELED = {
    "symbol", "origClientOrderId", "orderId", "orderListId", "clientOrderId", "transactTime", "price", "origQty",
    "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status", "timeInForce", "type", "side",
    "selfTradePreventionMode",
}  # fmt: skip
LIST = {"orderListId", "contingencyType", "listStatusType", "listOrderStatus", "listClientOrderId",
        "transactionTime", "symbol", "orders", "orderReports"}  # fmt: skip
STOP_FIELD = {"stopPrice"}  # a conditional field: the stop and take-profit types only


@pytest.mark.parametrize(
    "stop",
    [
        {"type": "STOP_LOSS", "stopPrice": "49000"},
        {"type": "STOP_LOSS_LIMIT", "stopPrice": "49000", "price": "48900", "timeInForce": "GTC"},
    ],
)
async def test_spot_stop_orders_answer_in_the_documented_shapes(
    api: Api, server: BinanceServer, stop: dict[str, str]
) -> None:
    base = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.1", **stop}
    ack = await api.ok("POST", "/api/v3/order", **base, newClientOrderId="s-default")  # stops default to ACK
    assert set(ack) == ACK
    result = await api.ok("POST", "/api/v3/order", **base, newClientOrderId="s-result", newOrderRespType="RESULT")
    assert set(result) == RESULT | STOP_FIELD
    assert (result["type"], result["status"], result["stopPrice"], result["workingTime"]) == (
        stop["type"], "NEW", "49000.00000000", -1,  # waiting for its trigger: not working yet
    )  # fmt: skip
    full = await api.ok("POST", "/api/v3/order", **base, newClientOrderId="s-full", newOrderRespType="FULL")
    assert set(full) == RESULT | STOP_FIELD | {"fills"} and full["fills"] == []
    queried = await api.order(origClientOrderId="s-full")
    assert set(queried) == QUERIED and (queried["isWorking"], queried["workingTime"]) == (False, -1)
    canceled = await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="s-full")
    assert set(canceled) == CANCELED | STOP_FIELD
    assert (canceled["status"], canceled["origClientOrderId"], canceled["type"]) == ("CANCELED", "s-full", stop["type"])
    limit = await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
                         quantity="0.1", price="51000", newOrderRespType="RESULT")  # fmt: skip
    assert set(limit) == RESULT  # no stopPrice on a type without one
    canceled = await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=limit["orderId"])
    assert set(canceled) == CANCELED
    immediate = await api.signed("POST", "/api/v3/order", **{**base, "stopPrice": "50500"})  # a sell stop above
    assert error(immediate) == (400, -2010, "Order would trigger immediately.")


async def test_oco_answers_in_the_documented_shapes(api: Api, server: BinanceServer) -> None:
    body = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("S1", qty="0.1"), newOrderRespType="RESULT")
    assert set(body) == LIST
    stop, maker = body["orderReports"]
    assert set(stop) == RESULT | STOP_FIELD and set(maker) == RESULT
    assert (stop["type"], stop["workingTime"], maker["type"], maker["workingTime"]) == (
        "STOP_LOSS_LIMIT", -1, "LIMIT_MAKER", T0,
    )  # fmt: skip
    assert [set(o) for o in body["orders"]] == [{"symbol", "orderId", "clientOrderId"}] * 2
    canceled = await api.ok("DELETE", "/api/v3/orderList", symbol="BTCUSDT", listClientOrderId="S1")
    assert set(canceled) == LIST and (canceled["listStatusType"], canceled["listOrderStatus"]) == ("ALL_DONE",) * 2
    stop, maker = canceled["orderReports"]
    assert (set(stop), set(maker)) == (CANCELED | STOP_FIELD, CANCELED)
    assert [(r["origClientOrderId"], r["status"]) for r in canceled["orderReports"]] == [
        ("S1-sl", "CANCELED"), ("S1-tp", "CANCELED"),
    ]  # fmt: skip
    full = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("S2", qty="0.1"), newOrderRespType="FULL")
    assert [set(r) for r in full["orderReports"]] == [RESULT | STOP_FIELD | {"fills"}, RESULT | {"fills"}]
    ack = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("S3", qty="0.1"), newOrderRespType="ACK")
    assert [set(r) for r in ack["orderReports"]] == [ACK, ACK]
    leg = await api.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="S2-tp")  # one leg: the list
    assert set(leg) == LIST and [set(r) for r in leg["orderReports"]] == [CANCELED | STOP_FIELD, CANCELED]


async def test_oco_take_profit_limit_leg_is_placed_by_its_limit_price(api: Api, server: BinanceServer) -> None:
    # SELL: LIMIT_MAKER / TAKE_PROFIT_LIMIT price > last traded price (50000) > STOP_LOSS / STOP_LOSS_LIMIT stopPrice
    tpl = {"aboveType": "TAKE_PROFIT_LIMIT", "aboveStopPrice": "50500", "aboveTimeInForce": "GTC"}
    answer = await api.signed("POST", "/api/v3/orderList/oco", **sell_oco("T1", qty="0.1", **tpl, abovePrice="49500"))
    assert error(answer) == (400, -2010, "The relationship of the prices for the orders is not correct.")
    body = await api.ok("POST", "/api/v3/orderList/oco", **sell_oco("T2", qty="0.1", **tpl, abovePrice="50600"))
    above = body["orderReports"][1]
    assert (above["type"], above["price"], above["stopPrice"]) == (
        "TAKE_PROFIT_LIMIT", "50600.00000000", "50500.00000000",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- test hooks: time, keys


async def test_timestamps_follow_the_documented_timing_rule_and_the_clock_can_be_skewed(
    api: Api, server: BinanceServer
) -> None:
    api.skew_ms = 1000  # our clock 1 s ahead of the server's: refused
    answer = await api.signed("GET", "/api/v3/account")
    assert error(answer) == (400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    api.skew_ms = 999
    assert (await api.signed("GET", "/api/v3/account")).status == 200
    api.skew_ms = -5001  # older than the default recvWindow of 5000 ms
    answer = await api.signed("GET", "/api/v3/account")
    assert error(answer) == (400, -1021, "Timestamp for this request is outside of the recvWindow.")
    assert (await api.signed("GET", "/api/v3/account", recvWindow=6000)).status == 200
    api.skew_ms = 0
    server.frozen_ms = None
    server.skew_clock(-3000)  # the server's clock 3 s behind ours
    ours = int(time.time() * 1000)
    assert abs((await api.get("/api/v3/time")).body["serverTime"] - (ours - 3000)) < 1000
    assert abs((await api.get("/fapi/v1/time")).body["serverTime"] - (ours - 3000)) < 1000


async def test_a_revoked_key_answers_2015_from_a_given_moment_until_restored(api: Api, server: BinanceServer) -> None:
    server.revoke_key(from_ms=T0 + 1000)
    assert (await api.signed("GET", "/api/v3/account")).status == 200  # before the moment
    server.frozen_ms = T0 + 1000
    for path in ("/api/v3/account", "/fapi/v2/account"):
        answer = await api.signed("GET", path)
        assert error(answer) == (401, -2015, "Invalid API-key, IP, or permissions for action.")
    assert (await api.get("/api/v3/time")).status == 200  # public endpoints need no key
    server.restore_key()
    assert (await api.signed("GET", "/api/v3/account")).status == 200


async def test_a_lagging_trade_list_shows_trades_polls_or_seconds_after_the_fill(
    api: Api, server: BinanceServer
) -> None:
    server.lag_trades(polls=2)
    body = await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert [f["tradeId"] for f in body["fills"]] == [5001]  # the order's own answer is not late
    assert (await api.order(orderId=body["orderId"]))["executedQty"] == "0.01000000"

    async def listed(path: str, **params: Any) -> list[int]:
        return [t["id"] for t in await api.ok("GET", path, symbol="BTCUSDT", **params)]

    assert await listed("/api/v3/myTrades") == []
    assert await listed("/api/v3/myTrades", orderId=body["orderId"]) == []  # every read of the list counts
    assert await listed("/api/v3/myTrades") == [5001]
    server.lag_trades(seconds=2)
    fut = await api.ok("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert (fut["status"], fut["executedQty"]) == ("FILLED", "0.01000000")
    assert await listed("/fapi/v1/userTrades", orderId=fut["orderId"]) == []
    server.frozen_ms = T0 + 1999
    assert await listed("/fapi/v1/userTrades") == []
    server.frozen_ms = T0 + 2000
    assert await listed("/fapi/v1/userTrades") == [5002]
    server.lag_trades()  # no lag: listed at once
    await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert await listed("/api/v3/myTrades") == [5001, 5003]


async def test_the_parameters_of_each_request_are_recorded(api: Api, server: BinanceServer) -> None:
    await api.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
                 recvWindow=7000)  # fmt: skip
    method, name, params = server.sent[-1]
    assert (method, name) == ("POST", "order")
    assert params == {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", "recvWindow": "7000",
                      "timestamp": str(T0)}  # fmt: skip
