"""One test per risk rule: passes at the limit, denies just past it, with its reason code."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from ordermesh.contract.wire import AccountState, OrderType, Quote, Side, TimeInForce, TradingState
from ordermesh.routing.risk import (
    Denial,
    OrderToCheck,
    Rate,
    RiskEngine,
    RiskLimits,
    RiskView,
    SymbolLimits,
    reduces,
)

D = Decimal
NOW_NS = 1_800_000_000_000_000_000


@dataclass(frozen=True)
class Spec:
    lot_step: Decimal = Decimal("0.01")
    min_lot: Decimal = Decimal("0.01")
    max_lot: Decimal = Decimal("50")
    contract_size: Decimal = Decimal("100000")
    min_notional: Decimal | None = None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(limits: RiskLimits | None = None, *, free_margin: str = "100000", equity: str = "100000") -> RiskView:
    quote = Quote(broker_id="paper", symbol="EURUSD", bid=D("1.09990"), ask=D("1.10010"))
    state = AccountState(account="acc", balance=D(equity), equity=D(equity), free_margin=D(free_margin))
    return RiskView(
        limits=lambda account: limits or RiskLimits(),
        instrument=lambda broker, symbol: Spec() if (broker, symbol) == ("paper", "EURUSD") else None,
        tick_size=lambda broker, symbol: D("0.00001"),
        quote=lambda broker, symbol: quote if symbol == "EURUSD" else None,
        account_state=lambda account: state,
        margin_per_lot=lambda account, broker, symbol, price: D("3666.67"),
        to_account_ccy=lambda account, symbol, amount: amount,  # a USD account, USD-quoted symbol
        day_start_equity=lambda account: D("100000"),
        clock=Clock(),
        now_ns=lambda: NOW_NS,
    )


def order(qty: str = "1", side: Side = Side.BUY, **kw: object) -> OrderToCheck:
    base: dict[str, object] = dict(
        account="acc", strategy_id="s1", broker_id="paper", symbol="EURUSD", side=side, quantity=D(qty)
    )
    base.update(kw)
    return OrderToCheck(**base)  # type: ignore[arg-type]


def check(view: RiskView, o: OrderToCheck) -> Denial | None:
    return RiskEngine(view).check(o)


def denied(view: RiskView, o: OrderToCheck, rule: str, reason: str) -> None:
    d = check(view, o)
    assert d is not None, f"expected a denial by {rule}"
    assert (d.rule, d.reason) == (rule, reason)


# ---------------------------------------------------------------------------------------------------


def test_reduces() -> None:
    assert reduces(D(2), order("2", Side.SELL))
    assert reduces(D(2), order("1", Side.SELL))
    assert not reduces(D(2), order("3", Side.SELL))  # flips
    assert not reduces(D(2), order("1", Side.BUY))
    assert not reduces(D(0), order("1", Side.SELL))
    assert reduces(D(-1), order("1", Side.BUY))


def test_instrument_must_be_known_at_the_broker() -> None:
    v = make()
    assert check(v, order()) is None
    denied(v, order(symbol="XAUUSD"), "instrument", "INSTRUMENT: XAUUSD is not a known tradable instrument at paper")
    denied(v, order(broker_id="mt5"), "instrument", "INSTRUMENT: EURUSD is not a known tradable instrument at mt5")


def test_quantity_bounds_and_lot_step() -> None:
    v = make(RiskLimits(check_margin=False))
    assert check(v, order("0.01")) is None and check(v, order("50")) is None
    denied(v, order("50.01"), "quantity", "RISK: quantity 50.01 is above the maximum 50 for EURUSD")
    denied(v, order("0.009"), "quantity", "RISK: quantity 0.009 is below the minimum 0.01 for EURUSD")
    denied(v, order("0.015"), "quantity", "RISK: quantity 0.015 is not a multiple of the lot step 0.01 for EURUSD")


def test_venue_minimum_order_value() -> None:
    """Binance-like floor: 10 USD on BTCUSDT (contract size 1): valued at the limit price, else the touch."""
    btc = Spec(lot_step=D("0.00001"), min_lot=D("0.00001"), max_lot=D("9000"), contract_size=D(1),
               min_notional=D("10"))  # fmt: skip
    quote = Quote(broker_id="binance", symbol="BTCUSDT", bid=D("49999"), ask=D("50001"))
    v = make(RiskLimits(check_margin=False, price_collar=None))
    v.instrument = lambda broker, symbol: btc if symbol == "BTCUSDT" else None
    v.quote = lambda broker, symbol: quote if symbol == "BTCUSDT" else None
    btc_order = {"broker_id": "binance", "symbol": "BTCUSDT"}
    assert check(v, order("0.0002", **btc_order)) is None  # 10.0002 at the ask
    denied(v, order("0.00019", **btc_order), "min_notional",
           "RISK: order value 9.50019 is below the venue's minimum 10 for BTCUSDT")  # fmt: skip
    denied(v, order("0.0002", Side.SELL, **btc_order), "min_notional",
           "RISK: order value 9.9998 is below the venue's minimum 10 for BTCUSDT")  # at the bid  # fmt: skip
    limit = {"order_type": OrderType.LIMIT, "limit_price": D("60000"), **btc_order}
    assert check(v, order("0.00017", **limit)) is None  # 10.2 at the limit price
    v.exposure.add_fill("acc", "s1", "BTCUSDT", D("0.00005"))  # closing a dust position: never floored
    assert check(v, order("0.00005", Side.SELL, reduce_only=True, **btc_order)) is None
    denied(v, order("0.00005", Side.SELL, **btc_order), "min_notional",
           "RISK: order value 2.49995 is below the venue's minimum 10 for BTCUSDT")  # fmt: skip
    v.quote = lambda broker, symbol: None
    assert check(v, order("0.00001", **btc_order)) is None  # no price: left to the venue


def test_price_on_the_tick() -> None:
    v = make(RiskLimits(price_collar=None))
    assert check(v, order(order_type=OrderType.LIMIT, limit_price=D("1.10001"))) is None
    denied(
        v,
        order(order_type=OrderType.LIMIT, limit_price=D("1.100005")),
        "tick",
        "RISK: limit price 1.100005 is not on the tick 0.00001 for EURUSD",
    )
    denied(
        v,
        order(order_type=OrderType.STOP, stop_price=D("1.200001")),
        "tick",
        "RISK: stop price 1.200001 is not on the tick 0.00001 for EURUSD",
    )


def test_gtd_expiry_already_past() -> None:
    v = make()
    assert check(v, order(time_in_force=TimeInForce.GTD, expire_at_ns=NOW_NS + 1)) is None
    denied(
        v,
        order(time_in_force=TimeInForce.GTD, expire_at_ns=NOW_NS),
        "gtd_expiry",
        "EXPIRED: the GTD expiry time has already passed",
    )


def test_max_notional_per_order_account_and_instrument() -> None:
    # 1 lot EURUSD bought at the ask 1.10010 = 110010 USD
    v = make(RiskLimits(max_order_notional=D("110010")))
    assert check(v, order("1")) is None
    denied(v, order("1.01"), "notional", "RISK: order notional 111110.10 exceeds the account limit 110010")
    v = make(RiskLimits(symbols={"EUR*": SymbolLimits(max_order_notional=D("55005"))}))
    assert check(v, order("0.5")) is None
    denied(v, order("0.51"), "notional", "RISK: order notional 56105.10 exceeds the EURUSD limit 55005")
    # a limit order is valued at its limit price
    assert check(v, order("0.5", order_type=OrderType.LIMIT, limit_price=D("1.10010"))) is None


def test_max_net_position_counts_position_and_open_orders() -> None:
    v = make(RiskLimits(symbols={"EURUSD": SymbolLimits(max_net_position=D("5"))}))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("3"))
    v.exposure.add_open("acc", "s1", "EURUSD", Side.BUY, D("1"), 1)
    assert check(v, order("1")) is None  # 3 + 1 open + 1 = 5
    denied(v, order("1.01"), "position", "RISK: net EURUSD position would reach 5.01, above the limit 5")
    # the other side counts from the position alone: 3 - 10 = -7
    denied(v, order("10", Side.SELL), "position", "RISK: net EURUSD position would reach -7, above the limit 5")


def test_net_position_short_side() -> None:
    v = make(RiskLimits(symbols={"EURUSD": SymbolLimits(max_net_position=D("5"))}))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("3"))
    assert check(v, order("8", Side.SELL)) is None  # 3 - 8 = -5
    denied(v, order("8.01", Side.SELL), "position", "RISK: net EURUSD position would reach -5.01, above the limit 5")


def test_max_gross_position_across_strategies() -> None:
    v = make(RiskLimits(symbols={"EURUSD": SymbolLimits(max_gross_position=D("6"))}))
    v.exposure.add_fill("acc", "s2", "EURUSD", D("-4"))  # another strategy is short 4
    assert check(v, order("2")) is None  # |2| + |-4| = 6
    denied(v, order("2.01"), "position", "RISK: gross EURUSD position would reach 6.01, above the limit 6")


def test_per_strategy_position_limits() -> None:
    v = make(RiskLimits(strategies={"s*": SymbolLimits(max_net_position=D("2"), max_gross_position=D("3"))}))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("1"))
    assert check(v, order("1")) is None
    denied(v, order("1.01"), "position", "RISK: strategy s1 EURUSD position would reach 2.01, above its limit 2")
    v.exposure.add_open("acc", "s1", "EURUSD", Side.SELL, D("1"), 1)
    assert check(v, order("1", Side.SELL)) is None  # gross: 1 + 1 open + 1 = 3; net 1 - 1 - 1 = -1
    denied(
        v,
        order("1.01", Side.SELL),
        "position",
        "RISK: strategy s1 EURUSD gross exposure would reach 3.01, above its limit 3",
    )


def test_max_open_orders_account_and_strategy() -> None:
    v = make(RiskLimits(max_open_orders=3, max_open_orders_per_strategy=2))
    v.exposure.add_open("acc", "s1", "EURUSD", Side.BUY, D("1"), 1)
    v.exposure.add_open("acc", "s2", "EURUSD", Side.BUY, D("1"), 1)
    assert check(v, order()) is None  # s1 has 1 (< 2), account has 2 (< 3)
    v.exposure.add_open("acc", "s1", "EURUSD", Side.BUY, D("1"), 1)
    denied(v, order(), "open_orders", "RISK: account acc has 3 open orders (limit 3)")
    v = make(RiskLimits(max_open_orders_per_strategy=2))
    v.exposure.add_open("acc", "s1", "EURUSD", Side.BUY, D("1"), 2)
    denied(v, order(), "open_orders", "RISK: strategy s1 has 2 open orders (limit 2)")


def test_submit_rate_token_buckets_per_strategy_and_broker() -> None:
    v = make(RiskLimits(submit_rate_per_strategy=Rate(per_second=2, burst=3)))
    engine = RiskEngine(v)
    assert all(engine.check(order()) is None for _ in range(3))  # the burst
    d = engine.check(order())
    assert d is not None and d.reason == "RISK: submit rate of strategy s1 above 2/s (burst 3)"
    assert engine.check(order(strategy_id="s2")) is None  # another strategy has its own bucket
    v.clock.t += 0.5  # type: ignore[attr-defined]  # one token back
    assert engine.check(order()) is None
    assert engine.check(order()) is not None
    v = make(RiskLimits(submit_rate_per_broker=Rate(per_second=1, burst=1)))
    engine = RiskEngine(v)
    assert engine.check(order()) is None
    d = engine.check(order(strategy_id="s9"))
    assert d is not None and d.reason == "RISK: submit rate of broker paper above 1/s (burst 1)"


def test_a_denied_order_does_not_use_up_the_rate() -> None:
    v = make(RiskLimits(submit_rate_per_strategy=Rate(per_second=1, burst=1)))
    engine = RiskEngine(v)
    assert engine.check(order("999")) is not None  # denied by quantity
    assert engine.check(order()) is None


def test_price_collar_against_the_last_quote() -> None:
    v = make()  # default collar 5 %, mid 1.10000
    assert check(v, order(order_type=OrderType.LIMIT, limit_price=D("1.15500"))) is None
    assert check(v, order(order_type=OrderType.LIMIT, limit_price=D("1.04500"))) is None
    denied(
        v,
        order(order_type=OrderType.LIMIT, limit_price=D("1.15501")),
        "price_collar",
        "RISK: limit price 1.15501 is outside the collar 1.045..1.155 (mid 1.10000 ±5%)",
    )
    assert check(make(RiskLimits(price_collar=None)), order(order_type=OrderType.LIMIT, limit_price=D("2"))) is None


def test_margin_sufficiency_from_the_keepers_account_state() -> None:
    v = make(free_margin="3666.67")
    assert check(v, order("1")) is None
    denied(v, order("1.01"), "margin", "INSUFFICIENT_FUNDS: order needs margin 3703.34, free margin is 3666.67")
    # reducing a position releases margin: never refused for margin
    v.exposure.add_fill("acc", "s1", "EURUSD", D("2"))
    assert check(v, order("2", Side.SELL)) is None


def test_reduce_only_never_increases_or_flips() -> None:
    v = make()
    v.exposure.add_fill("acc", "s1", "EURUSD", D("2"))
    assert check(v, order("2", Side.SELL, reduce_only=True)) is None
    denied(
        v,
        order("2.01", Side.SELL, reduce_only=True),
        "reduce_only",
        "RISK: reduce-only SELL 2.01 would increase or flip the EURUSD position 2",
    )
    denied(
        v,
        order("1", reduce_only=True),
        "reduce_only",
        "RISK: reduce-only BUY 1 would increase or flip the EURUSD position 2",
    )


def test_reduce_only_with_a_position_id_is_checked_against_its_ticket_not_the_net() -> None:
    v = make()
    # a hedging account: long 1 and short 1 on two tickets, net 0
    v.exposure.add_fill("acc", "s1", "EURUSD", D("1"))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("-1"))
    # closing the long ticket sells 1: the net goes to -1, yet the broker only closes that ticket
    assert check(v, order("1", Side.SELL, reduce_only=True, position_id="100000001")) is None
    assert check(v, order("1", Side.BUY, reduce_only=True, position_id="100000002")) is None
    # without the ticket the old rule stands: against a net of 0 nothing reduces
    denied(
        v,
        order("1", Side.SELL, reduce_only=True),
        "reduce_only",
        "RISK: reduce-only SELL 1 would increase or flip the EURUSD position 0",
    )


def test_reducing_state_lets_ticket_closes_through_only() -> None:
    v = make()
    v.exposure.add_fill("acc", "s1", "EURUSD", D("1"))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("-1"))
    v.trading.set(TradingState.REDUCING, "acc", None)
    reason = "TRADING_STATE: trading is REDUCING (account acc): only orders that reduce the EURUSD position pass"
    assert check(v, order("1", Side.SELL, reduce_only=True, position_id="100000001")) is None
    denied(v, order("1", Side.SELL, reduce_only=True), "trading_state", reason)
    denied(v, order("1", Side.SELL, position_id="100000001"), "trading_state", reason)  # not reduce-only
    v.trading.set(TradingState.HALTED, "acc", None)
    denied(
        v,
        order("1", Side.SELL, reduce_only=True, position_id="100000001"),
        "trading_state",
        "TRADING_STATE: trading is HALTED (account acc)",
    )


@pytest.mark.parametrize(
    ("where", "kw"),
    [("global", {}), ("account acc", {"account": "acc"}), ("strategy s1", {"account": "acc", "strategy": "s1"})],
)
def test_trading_state_halted_and_reducing(where: str, kw: dict[str, str]) -> None:
    v = make()
    v.exposure.add_fill("acc", "s1", "EURUSD", D("1"))
    v.trading.set(TradingState.HALTED, kw.get("account"), kw.get("strategy"))
    denied(v, order("1", Side.SELL), "trading_state", f"TRADING_STATE: trading is HALTED ({where})")
    v.trading.set(TradingState.REDUCING, kw.get("account"), kw.get("strategy"))
    assert check(v, order("1", Side.SELL)) is None  # closes the position
    denied(
        v,
        order("1"),
        "trading_state",
        f"TRADING_STATE: trading is REDUCING ({where}): only orders that reduce the EURUSD position pass",
    )
    v.trading.set(TradingState.ACTIVE, kw.get("account"), kw.get("strategy"))
    assert check(v, order("1")) is None


def test_most_restrictive_trading_state_wins() -> None:
    v = make()
    v.trading.set(TradingState.REDUCING, None, None)
    v.trading.set(TradingState.HALTED, "acc", "s1")
    denied(v, order(), "trading_state", "TRADING_STATE: trading is HALTED (strategy s1)")
    assert v.trading.effective("acc", "s2") == (TradingState.REDUCING, "global")


def test_daily_loss_limit_denies_and_halts_the_account() -> None:
    assert check(make(RiskLimits(daily_loss_limit=D("500")), equity="99500.01"), order()) is None
    v = make(RiskLimits(daily_loss_limit=D("500")), equity="99500")
    denied(v, order(), "daily_loss", "RISK: daily loss 500.00 reached the limit 500; account acc halted")
    assert v.trading.accounts["acc"] is TradingState.HALTED


def test_cancel_rate_per_strategy_and_per_broker() -> None:
    v = make(RiskLimits(cancel_rate_per_strategy=Rate(per_second=1, burst=2)))
    engine = RiskEngine(v)
    assert engine.check_cancel("acc", "s1", "paper") is None
    assert engine.check_cancel("acc", "s1", "paper") is None
    d = engine.check_cancel("acc", "s1", "paper")
    assert d is not None and d.reason == "RISK: cancel rate of strategy s1 above 1/s (burst 2)"
    assert engine.check_cancel("acc", "s2", "paper") is None  # its own bucket
    v.clock.t += 1.0  # type: ignore[attr-defined]
    assert engine.check_cancel("acc", "s1", "paper") is None
    v = make(RiskLimits(cancel_rate_per_broker=Rate(per_second=1, burst=1)))
    engine = RiskEngine(v)
    assert engine.check_cancel("acc", "s1", "paper") is None
    d = engine.check_cancel("acc", "s9", "paper")
    assert d is not None and d.reason == "RISK: cancel rate of broker paper above 1/s (burst 1)"
    # submits and cancels are counted apart
    assert engine.check(order()) is None


def test_gross_exposure_cap_of_the_account_counts_every_strategy_and_open_order() -> None:
    # valued at the mid 1.10000: 110,000 USD a lot; the cap is three lots' worth
    v = make(RiskLimits(max_gross_notional=D("330000"), check_margin=False))
    v.exposure.add_fill("acc", "s1", "EURUSD", D("2"))
    v.exposure.add_fill("acc", "s2", "EURUSD", D("-1"))  # another strategy: the account is net long 1
    v.exposure.add_open("acc", "s2", "EURUSD", Side.BUY, D("1"), 1)  # worst case: long 2
    assert check(v, order("1")) is None  # long 3 at worst: 330,000, at the cap
    denied(
        v, order("1.01"), "gross_exposure",
        "RISK: gross exposure would reach 331100.00 in the account currency, above the account limit 330000",
    )  # fmt: skip
    # an order that does not add exposure passes even when the account is already above its cap
    v.exposure.add_fill("acc", "s1", "EURUSD", D("3"))
    assert check(v, order("1", Side.SELL, strategy_id="s3")) is None
    # a symbol that cannot be valued is a refusal, not a guess
    v.exposure.add_fill("acc", "s1", "XAUUSD", D("1"))
    denied(
        v, order("0.01", Side.SELL), "gross_exposure", "RISK: no price for XAUUSD to value the account's gross exposure"
    )
