"""The Binance REST endpoints the adapters call, each with its name in metrics, its documented request weight and
ccxt's implicit method: spot (``/api/v3``) and USD-M futures (``/fapi``), whose adapters share the table's shape."""

from __future__ import annotations

from typing import NamedTuple


class Endpoint(NamedTuple):
    """One REST endpoint: its name in metrics, its documented request weight, ccxt's implicit method."""

    name: str
    weight: int
    method: str


class Endpoints(NamedTuple):
    time: Endpoint
    exchange_info: Endpoint
    depth: Endpoint
    account: Endpoint
    new_order: Endpoint
    get_order: Endpoint
    cancel_order: Endpoint
    open_orders: Endpoint  # one symbol
    open_orders_all: Endpoint
    trades: Endpoint
    trades_of_order: Endpoint
    book_ticker: Endpoint


SPOT_API = Endpoints(
    time=Endpoint("GET /api/v3/time", 1, "publicGetTime"),
    exchange_info=Endpoint("GET /api/v3/exchangeInfo", 20, "publicGetExchangeInfo"),
    depth=Endpoint("GET /api/v3/depth", 5, "publicGetDepth"),
    account=Endpoint("GET /api/v3/account", 20, "privateGetAccount"),
    new_order=Endpoint("POST /api/v3/order", 1, "privatePostOrder"),
    get_order=Endpoint("GET /api/v3/order", 4, "privateGetOrder"),
    cancel_order=Endpoint("DELETE /api/v3/order", 1, "privateDeleteOrder"),
    open_orders=Endpoint("GET /api/v3/openOrders", 6, "privateGetOpenOrders"),
    open_orders_all=Endpoint("GET /api/v3/openOrders", 80, "privateGetOpenOrders"),
    trades=Endpoint("GET /api/v3/myTrades", 20, "privateGetMyTrades"),
    trades_of_order=Endpoint("GET /api/v3/myTrades", 5, "privateGetMyTrades"),
    book_ticker=Endpoint("GET /api/v3/ticker/bookTicker", 4, "publicGetTickerBookTicker"),
)
OCO = Endpoint("POST /api/v3/orderList/oco", 1, "privatePostOrderListOco")
FUTURES_API = Endpoints(
    time=Endpoint("GET /fapi/v1/time", 1, "fapiPublicGetTime"),
    exchange_info=Endpoint("GET /fapi/v1/exchangeInfo", 1, "fapiPublicGetExchangeInfo"),
    depth=Endpoint("GET /fapi/v1/depth", 5, "fapiPublicGetDepth"),
    account=Endpoint("GET /fapi/v3/account", 5, "fapiPrivateV3GetAccount"),
    new_order=Endpoint("POST /fapi/v1/order", 1, "fapiPrivatePostOrder"),
    get_order=Endpoint("GET /fapi/v1/order", 1, "fapiPrivateGetOrder"),
    cancel_order=Endpoint("DELETE /fapi/v1/order", 1, "fapiPrivateDeleteOrder"),
    open_orders=Endpoint("GET /fapi/v1/openOrders", 1, "fapiPrivateGetOpenOrders"),
    open_orders_all=Endpoint("GET /fapi/v1/openOrders", 40, "fapiPrivateGetOpenOrders"),
    trades=Endpoint("GET /fapi/v1/userTrades", 5, "fapiPrivateGetUserTrades"),
    trades_of_order=Endpoint("GET /fapi/v1/userTrades", 5, "fapiPrivateGetUserTrades"),
    book_ticker=Endpoint("GET /fapi/v1/ticker/bookTicker", 5, "fapiPublicGetTickerBookTicker"),
)
AMEND = Endpoint("PUT /fapi/v1/order", 1, "fapiPrivatePutOrder")
# USD-M conditional orders (docs: placing costs no IP weight, only the order-count limits)
ALGO_NEW = Endpoint("POST /fapi/v1/algoOrder", 0, "fapiPrivatePostAlgoOrder")
ALGO_GET = Endpoint("GET /fapi/v1/algoOrder", 1, "fapiPrivateGetAlgoOrder")
ALGO_CANCEL = Endpoint("DELETE /fapi/v1/algoOrder", 1, "fapiPrivateDeleteAlgoOrder")
ALGO_OPEN = Endpoint("GET /fapi/v1/openAlgoOrders", 1, "fapiPrivateGetOpenAlgoOrders")
ALGO_OPEN_ALL = Endpoint("GET /fapi/v1/openAlgoOrders", 40, "fapiPrivateGetOpenAlgoOrders")
POSITION_RISK = Endpoint("GET /fapi/v3/positionRisk", 5, "fapiPrivateV3GetPositionRisk")
