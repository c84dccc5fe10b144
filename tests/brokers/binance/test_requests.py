"""Binance request parameters, hedge-mode position sides and the request-weight budget (pure, no server)."""

from __future__ import annotations

import pytest

from ordermesh.brokers.binance.requests import (
    OrderTerms,
    WeightBudget,
    attached_requests,
    is_algo,
    order_request,
    position_side,
)
from ordermesh.brokers.model import OrderError
from ordermesh.contract.wire import OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL


def terms(order_type: OrderType, **kw: object) -> OrderTerms:
    args: dict[str, object] = {"symbol_id": "BTCUSDT", "side": BUY, "order_type": order_type, "quantity": "0.01"}
    args.update(kw)
    return OrderTerms(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order_type", "futures", "expected"),
    [
        (OrderType.MARKET, False, {"type": "MARKET"}),
        (OrderType.LIMIT, False, {"type": "LIMIT", "price": "50000", "timeInForce": "GTC"}),
        (OrderType.STOP, False, {"type": "STOP_LOSS", "stopPrice": "51000"}),
        (OrderType.STOP_LIMIT, False,
         {"type": "STOP_LOSS_LIMIT", "price": "50000", "stopPrice": "51000", "timeInForce": "GTC"}),
        (OrderType.MARKET, True, {"type": "MARKET"}),
        (OrderType.LIMIT, True, {"type": "LIMIT", "price": "50000", "timeInForce": "GTC"}),
    ],
)  # fmt: skip
def test_order_types_map_to_binance_types_with_exactly_their_parameters(
    order_type: OrderType, futures: bool, expected: dict[str, str]
) -> None:
    request = order_request(
        terms(order_type, limit_price="50000", stop_price="51000"), "om-1", futures=futures
    )  # prices given to all: only the type's own are sent
    common = {
        "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "newClientOrderId": "om-1",
        "newOrderRespType": "RESULT" if futures else "FULL",
    }  # fmt: skip
    assert request == {**common, **expected}
    assert not is_algo(request)


@pytest.mark.parametrize(
    ("order_type", "expected"),
    [
        (OrderType.STOP, {"type": "STOP_MARKET", "triggerPrice": "51000"}),
        (OrderType.STOP_LIMIT, {"type": "STOP", "price": "50000", "triggerPrice": "51000", "timeInForce": "GTC"}),
    ],
)  # fmt: skip
def test_futures_conditional_orders_are_algo_orders(order_type: OrderType, expected: dict[str, str]) -> None:
    """Since 2025-12 USD-M takes STOP / STOP_MARKET only on POST /fapi/v1/algoOrder: trigger as triggerPrice, our id
    as clientAlgoId, no stopPrice / newClientOrderId (the answer is the algo order, not RESULT)."""
    request = order_request(terms(order_type, limit_price="50000", stop_price="51000"), "om-1", futures=True)
    common = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "clientAlgoId": "om-1"}
    assert request == {**common, **expected}
    assert is_algo(request)
    reduce = order_request(terms(order_type, side=SELL, limit_price="1", stop_price="2", reduce_only=True), "om-2",
                           futures=True)  # fmt: skip
    assert reduce["reduceOnly"] == "true" and "positionSide" not in reduce
    hedged = order_request(terms(order_type, side=SELL, limit_price="1", stop_price="2", reduce_only=True), "om-3",
                           futures=True, hedge_mode=True)  # fmt: skip
    assert hedged["positionSide"] == "LONG" and "reduceOnly" not in hedged


def test_missing_prices_and_unsupported_time_in_force_are_refused_before_sending() -> None:
    with pytest.raises(OrderError, match="without a limit price"):
        order_request(terms(OrderType.LIMIT), "om-1", futures=False)
    with pytest.raises(OrderError, match="without a stop price"):
        order_request(terms(OrderType.STOP), "om-1", futures=True)
    with pytest.raises(OrderError, match="DAY is not supported"):
        order_request(terms(OrderType.LIMIT, limit_price="1", time_in_force=TimeInForce.DAY), "om-1", futures=False)
    with pytest.raises(OrderError, match="FOK is not supported for Binance market"):
        order_request(terms(OrderType.MARKET, time_in_force=TimeInForce.FOK), "om-1", futures=False)
    ioc = order_request(terms(OrderType.LIMIT, limit_price="1", time_in_force=TimeInForce.IOC), "x", futures=True)
    assert ioc["timeInForce"] == "IOC"


def test_reduce_only_one_way_and_position_side_in_hedge_mode() -> None:
    one_way = order_request(terms(OrderType.MARKET, side=SELL, reduce_only=True), "om-1", futures=True)
    assert one_way["reduceOnly"] == "true" and "positionSide" not in one_way
    spot = order_request(terms(OrderType.MARKET, side=SELL, reduce_only=True), "om-1", futures=False)
    assert "reduceOnly" not in spot and "positionSide" not in spot  # spot has neither
    hedge = order_request(terms(OrderType.MARKET, side=SELL, reduce_only=True), "om-1", futures=True, hedge_mode=True)
    assert hedge["positionSide"] == "LONG" and "reduceOnly" not in hedge  # Binance refuses reduceOnly in hedge mode


@pytest.mark.parametrize(
    ("side", "reduce_only", "position_id", "expected"),
    [
        (BUY, False, None, "LONG"),  # opens a long
        (SELL, False, None, "SHORT"),  # opens a short
        (SELL, True, None, "LONG"),  # closes the long
        (BUY, True, None, "SHORT"),  # closes the short
        (SELL, False, "LONG", "LONG"),  # close-all names the position
        (BUY, False, "SHORT", "SHORT"),
    ],
)
def test_position_side(side: Side, reduce_only: bool, position_id: str | None, expected: str) -> None:
    assert position_side(side, reduce_only=reduce_only, position_id=position_id) == expected


def test_a_position_id_that_is_not_a_hedge_side_is_refused() -> None:
    with pytest.raises(OrderError, match="not a Binance hedge position"):
        position_side(BUY, reduce_only=False, position_id="12345")


def test_attached_orders_futures_are_reduce_only_mark_price_triggers() -> None:
    out = attached_requests(
        symbol_id="BTCUSDT", parent_side=BUY, quantity="0.01", stop_loss="49000", take_profit="52000",
        client_order_id="om-a", futures=True,
    )  # fmt: skip
    assert [(kind, r["type"], r["side"], r["triggerPrice"], r["clientAlgoId"], r["reduceOnly"]) for kind, r in out] == [
        ("sl", "STOP_MARKET", "SELL", "49000", "om-a-sl", "true"),
        ("tp", "TAKE_PROFIT_MARKET", "SELL", "52000", "om-a-tp", "true"),
    ]
    assert all(r["workingType"] == "MARK_PRICE" and is_algo(r) for _, r in out)
    assert all("stopPrice" not in r and "newClientOrderId" not in r for _, r in out)
    hedged = attached_requests(
        symbol_id="BTCUSDT", parent_side=SELL, quantity="0.01", stop_loss="51000", take_profit=None,
        client_order_id="om-b", futures=True, hedge_mode=True,
    )  # fmt: skip
    assert [(k, r["side"], r["positionSide"], "reduceOnly" in r) for k, r in hedged] == [("sl", "BUY", "SHORT", False)]


def test_attached_orders_spot_both_make_one_oco_with_the_legs_on_the_right_sides() -> None:
    ((kind, sell),) = attached_requests(
        symbol_id="BTCUSDT", parent_side=BUY, quantity="0.00999", stop_loss="49000", take_profit="52000",
        client_order_id="om-a", futures=False,
    )  # fmt: skip
    assert kind == "oco"
    assert sell == {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.00999", "listClientOrderId": "om-a-oco",
        "newOrderRespType": "FULL", "aboveType": "LIMIT_MAKER", "abovePrice": "52000",
        "aboveClientOrderId": "om-a-tp", "belowType": "STOP_LOSS", "belowStopPrice": "49000",
        "belowClientOrderId": "om-a-sl",
    }  # fmt: skip
    ((_, buy),) = attached_requests(
        symbol_id="BTCUSDT", parent_side=SELL, quantity="1", stop_loss="51000", take_profit="48000",
        client_order_id="om-b", futures=False,
    )  # fmt: skip
    assert (buy["side"], buy["aboveType"], buy["aboveStopPrice"], buy["belowType"], buy["belowPrice"]) == (
        "BUY", "STOP_LOSS", "51000", "LIMIT_MAKER", "48000",
    )  # fmt: skip
    only_sl = attached_requests(
        symbol_id="BTCUSDT", parent_side=BUY, quantity="1", stop_loss="49000", take_profit=None,
        client_order_id="om-c", futures=False,
    )  # fmt: skip
    assert [(k, r["type"], r["stopPrice"]) for k, r in only_sl] == [("sl", "STOP_LOSS", "49000")]


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_weight_budget_waits_for_the_next_minute_only_when_the_request_would_pass_the_ceiling() -> None:
    t = FakeTime(600.0 + 45)  # 45 s into a minute window
    budget = WeightBudget(100, headroom=0.9, clock=t.clock, sleep=t.sleep)
    assert budget.ceiling == 90
    assert await budget.acquire(20) == 0
    budget.release(20, used=85)  # Binance says 85 used (other processes on the IP count too)
    assert await budget.acquire(5) == 0  # 90: at the ceiling, allowed
    budget.release(5, used=90)
    waited = await budget.acquire(1)  # 91 > 90: waits for the window that starts at 660 s (+0.5 s margin)
    assert waited == pytest.approx(15.5) and t.slept == [pytest.approx(15.5)]
    assert (budget.used, budget.in_flight, budget.waits) == (0, 1, 1)  # new window: only the request in flight
    budget.release(1, used=1)
    assert budget.used == 1


async def test_weight_budget_counts_requests_in_flight_and_ignores_out_of_order_answers() -> None:
    t = FakeTime(0.0)
    budget = WeightBudget(10, headroom=1.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        await budget.acquire(2)  # ten in flight: the ceiling
    assert budget.in_flight == 10 and t.slept == []
    budget.release(2, used=10)
    budget.release(2, used=4)  # an older answer arriving late never lowers the count
    assert budget.used == 10
    budget.release(2, used=None)  # no answer (timeout): assumed counted
    assert budget.used == 12


def test_weight_budget_is_shared_by_host_and_api() -> None:
    a = WeightBudget.shared("http://127.0.0.1:1", "api", 6000, 0.9)
    assert WeightBudget.shared("http://127.0.0.1:1", "api", 6000, 0.9) is a
    assert WeightBudget.shared("http://127.0.0.1:1", "fapi", 2400, 0.9) is not a
