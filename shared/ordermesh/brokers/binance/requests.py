"""Pure parts of the Binance gateways: the REST parameters of an order, the hedge-mode position side, and the
request-weight budget. No I/O here except the budget's waiting (an injected sleep).

Order types (Binance's names, from its REST documentation):

=============  ==========================================  ===============================================
ours           spot (``POST /api/v3/order``)               USD-M futures
=============  ==========================================  ===============================================
MARKET         MARKET                                      MARKET (``POST /fapi/v1/order``)
LIMIT          LIMIT + timeInForce                         LIMIT + timeInForce (``POST /fapi/v1/order``)
STOP           STOP_LOSS + stopPrice                       STOP_MARKET + triggerPrice (``POST /fapi/v1/algoOrder``)
STOP_LIMIT     STOP_LOSS_LIMIT + stopPrice + timeInForce   STOP + triggerPrice + timeInForce (algo order)
=============  ==========================================  ===============================================

Binance's STOP_LOSS triggers a BUY when the price rises to the stop and a SELL when it falls to it: the classic
stop our ``STOP`` means. Take-profit types are used for attached take-profits only (see ``attached_requests``).

USD-M conditional orders (STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET) are accepted since 2025-12-09 only
by the Algo Order API: ``algoType=CONDITIONAL``, the trigger as ``triggerPrice`` and our id as ``clientAlgoId``
(``/fapi/v1/order`` answers -4120). Once triggered, the order placed in the matching engine is Binance's
``actualOrderId``. :func:`is_algo` tells the two kinds of request apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ordermesh.brokers.model import OrderError
from ordermesh.contract.wire import OrderType, Side, TimeInForce

ZERO: Final = Decimal(0)

SPOT_TYPES: Final = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP_LOSS",
    OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT",
}
FUTURES_TYPES: Final = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP",
}
#: Binance types that take a limit price / a time in force / a stop price.
PRICED: Final = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "STOP", "TAKE_PROFIT", "LIMIT_MAKER"})
WITH_TIF: Final = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "STOP", "TAKE_PROFIT"})
TRIGGERED: Final = frozenset(
    {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT", "STOP", "STOP_MARKET", "TAKE_PROFIT_MARKET"}
)
TIFS: Final = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)
#: USD-M types only the Algo Order API takes (``POST /fapi/v1/algoOrder``, ``algoType=CONDITIONAL``).
ALGO_TYPES: Final = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"})


def is_algo(request: dict[str, str]) -> bool:
    """Whether a request built here goes to ``/fapi/v1/algoOrder`` (else ``/fapi/v1/order`` or spot's)."""
    return request.get("algoType") == "CONDITIONAL"


def position_side(side: Side, *, reduce_only: bool, position_id: str | None) -> str:
    """Hedge mode's ``positionSide``: the position named by ``position_id`` (``LONG`` / ``SHORT``, as the keeper
    and close-all name Binance's hedge positions), else the one a buy or sell opens, or closes when reduce-only."""
    if position_id in ("LONG", "SHORT"):
        return position_id
    if position_id is not None:
        raise OrderError(f"position_id {position_id!r} is not a Binance hedge position (LONG or SHORT)")
    opens_long = side is Side.BUY
    return ("SHORT" if opens_long else "LONG") if reduce_only else ("LONG" if opens_long else "SHORT")


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What one order asks of the venue, with prices and quantity already at the market's precision (strings)."""

    symbol_id: str  # Binance's symbol, e.g. BTCUSDT
    side: Side
    order_type: OrderType
    quantity: str
    limit_price: str | None = None
    stop_price: str | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    position_id: str | None = None


def order_request(
    terms: OrderTerms, client_order_id: str, *, futures: bool, hedge_mode: bool = False
) -> dict[str, str]:
    """The parameters of ``POST /api/v3/order`` (spot), ``POST /fapi/v1/order`` (futures) or, for a futures
    conditional type, ``POST /fapi/v1/algoOrder`` (:func:`is_algo`). Raises OrderError for what the market cannot
    take (unsupported time in force, a missing price), before anything is sent."""
    binance_type = (FUTURES_TYPES if futures else SPOT_TYPES)[terms.order_type]
    algo = futures and binance_type in ALGO_TYPES
    request = {
        "symbol": terms.symbol_id,
        "side": terms.side.value,
        "type": binance_type,
        "quantity": terms.quantity,
    }
    if algo:
        request["algoType"] = "CONDITIONAL"
        request["clientAlgoId"] = client_order_id
    else:
        request["newClientOrderId"] = client_order_id
        # spot FULL answers carry the fills; futures answers never do (RESULT has the executed quantity)
        request["newOrderRespType"] = "RESULT" if futures else "FULL"
    if binance_type in PRICED:
        if terms.limit_price is None:
            raise OrderError(f"{terms.order_type.value} order without a limit price")
        request["price"] = terms.limit_price
    if binance_type in TRIGGERED:
        if terms.stop_price is None:
            raise OrderError(f"{terms.order_type.value} order without a stop price")
        request["triggerPrice" if algo else "stopPrice"] = terms.stop_price
    if binance_type in WITH_TIF:
        if terms.time_in_force not in TIFS:
            raise OrderError(f"time in force {terms.time_in_force.value} is not supported by Binance")
        request["timeInForce"] = terms.time_in_force.value
    elif binance_type == "MARKET" and terms.time_in_force not in (TimeInForce.GTC, TimeInForce.IOC):
        raise OrderError(f"time in force {terms.time_in_force.value} is not supported for Binance market orders")
    if futures:
        if hedge_mode:
            # Binance refuses reduceOnly in hedge mode: closing is said by the position side instead
            request["positionSide"] = position_side(
                terms.side, reduce_only=terms.reduce_only, position_id=terms.position_id
            )
        elif terms.reduce_only:
            request["reduceOnly"] = "true"
    return request


def attached_requests(
    *,
    symbol_id: str,
    parent_side: Side,
    quantity: str,
    stop_loss: str | None,
    take_profit: str | None,
    client_order_id: str,
    futures: bool,
    hedge_mode: bool = False,
    position_id: str | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """The protective orders of a filled order: ``(kind, parameters)`` with kind ``oco`` (spot: one OCO list,
    ``POST /api/v3/orderList/oco``, when both are given, since a spot balance can be locked only once) or ``sl`` /
    ``tp`` (a single spot order, or each futures algo order: STOP_MARKET / TAKE_PROFIT_MARKET, reduce-only,
    triggered by the mark price). Client order ids (futures: ``clientAlgoId``) are ``<parent>-sl`` and
    ``<parent>-tp`` (the list ``<parent>-oco``)."""
    side = parent_side.opposite
    out: list[tuple[str, dict[str, str]]] = []
    if futures:
        for kind, price, binance_type in (
            ("sl", stop_loss, "STOP_MARKET"),
            ("tp", take_profit, "TAKE_PROFIT_MARKET"),
        ):
            if price is None:
                continue
            request = {
                "algoType": "CONDITIONAL", "symbol": symbol_id, "side": side.value, "type": binance_type,
                "quantity": quantity, "triggerPrice": price, "workingType": "MARK_PRICE",
                "clientAlgoId": f"{client_order_id}-{kind}",
            }  # fmt: skip
            if hedge_mode:
                request["positionSide"] = position_side(side, reduce_only=True, position_id=position_id)
            else:
                request["reduceOnly"] = "true"
            out.append((kind, request))
        return out
    if stop_loss is not None and take_profit is not None:
        # SELL (protecting a long): the take-profit above, the stop below; BUY the other way round
        tp = {"Type": "LIMIT_MAKER", "Price": take_profit, "ClientOrderId": f"{client_order_id}-tp"}
        sl = {"Type": "STOP_LOSS", "StopPrice": stop_loss, "ClientOrderId": f"{client_order_id}-sl"}
        above, below = (tp, sl) if side is Side.SELL else (sl, tp)
        request = {"symbol": symbol_id, "side": side.value, "quantity": quantity,
                   "listClientOrderId": f"{client_order_id}-oco", "newOrderRespType": "FULL"}  # fmt: skip
        request.update({f"above{k}": v for k, v in above.items()})
        request.update({f"below{k}": v for k, v in below.items()})
        return [("oco", request)]
    if stop_loss is not None:
        out.append(("sl", {"symbol": symbol_id, "side": side.value, "type": "STOP_LOSS", "quantity": quantity,
                           "stopPrice": stop_loss, "newClientOrderId": f"{client_order_id}-sl",
                           "newOrderRespType": "FULL"}))  # fmt: skip
    if take_profit is not None:
        out.append(("tp", {"symbol": symbol_id, "side": side.value, "type": "LIMIT_MAKER", "quantity": quantity,
                           "price": take_profit, "newClientOrderId": f"{client_order_id}-tp",
                           "newOrderRespType": "FULL"}))  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ request weight


class WeightBudget:
    """Binance's request-weight limit of one IP on one API (spot ``/api`` or futures ``/fapi``): a fixed window per
    UTC minute. One budget is shared by every adapter of the process that talks to the same host and API
    (:meth:`shared`). Each answer's ``X-MBX-USED-WEIGHT-1M`` (:meth:`observe`) counts the whole IP, so gateways in
    other processes on the machine are seen too. A request whose weight would take the window past
    ``limit * headroom`` waits for the next window instead of being sent (and answered 429, or the IP banned)."""

    _shared: dict[tuple[str, str], WeightBudget] = {}

    def __init__(
        self,
        limit: int,
        *,
        headroom: float = 0.9,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if limit <= 0 or not 0 < headroom <= 1:
            raise ValueError(f"need limit > 0 and 0 < headroom <= 1, got {limit}, {headroom}")
        self.limit = limit
        self.headroom = headroom
        self.clock = clock
        self.sleep = sleep
        self.window = int(clock() // 60)
        self.used = 0  # weight used in this window, as Binance last said (plus what we sent since)
        self.in_flight = 0  # weight of requests sent and not answered
        self.waits = 0
        self.waited_s = 0.0

    @classmethod
    def shared(cls, host: str, api: str, limit: int, headroom: float) -> WeightBudget:
        key = (host, api)
        budget = cls._shared.get(key)
        if budget is None:
            budget = cls._shared[key] = cls(limit, headroom=headroom)
        return budget

    def _roll(self) -> float:
        now = self.clock()
        window = int(now // 60)
        if window != self.window:
            self.window, self.used = window, 0
        return now

    @property
    def ceiling(self) -> int:
        return int(self.limit * self.headroom)

    async def acquire(self, weight: int) -> float:
        """Wait until ``weight`` fits in the window; returns the seconds waited. Pair with :meth:`release`."""
        waited = 0.0
        while True:
            now = self._roll()
            if self.used + self.in_flight + weight <= self.ceiling or self.used + self.in_flight == 0:
                break
            # 0.5 s past the boundary: our clock and Binance's differ by a few hundred ms at most (recvWindow)
            wait = (self.window + 1) * 60 - now + 0.5
            self.waits += 1
            self.waited_s += wait
            waited += wait
            await self.sleep(wait)
        self.in_flight += weight
        return waited

    def release(self, weight: int, used: int | None) -> None:
        """The request's answer: ``used`` is its ``X-MBX-USED-WEIGHT-1M`` (None when there was no answer)."""
        self.in_flight = max(0, self.in_flight - weight)
        self._roll()
        if used is not None:
            # answers of concurrent requests may arrive out of order: the count only grows within a window
            self.used = max(self.used, used)
        else:
            self.used += weight  # sent, maybe counted: assume it was
