"""Commission models (pure): per lot, bps of notional, maker/taker, minimum per order, quote or base asset."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ordermesh.brokers.paper.commissions import CommissionModel, charge, model_for
from ordermesh.contract.wire import Liquidity

M, T = Liquidity.MAKER, Liquidity.TAKER


def _charge(model: CommissionModel, lots: str, price: str, contract: str = "100000", liq: Liquidity = T, **kw: D):
    return charge(
        model,
        lots=D(lots),
        price=D(price),
        contract_size=D(contract),
        liquidity=liq,
        base_currency="EUR",
        quote_currency="USD",
        **kw,
    )


def test_per_lot_fixed() -> None:
    c = _charge(CommissionModel(per_lot=D("3.50")), "0.30", "1.08505")
    assert (c.amount, c.asset) == (D("1.05"), "USD")


def test_bps_of_notional() -> None:
    # 2 lots * 100000 * 1.08505 = 217010 USD; 0.5 bp = 10.8505
    c = _charge(CommissionModel(bps=D("0.5")), "2", "1.08505")
    assert c.amount == D("10.8505")


def test_maker_and_taker_rates() -> None:
    model = CommissionModel(bps=D("9"), maker_bps=D("2"), taker_bps=D("5"))
    # BTC: 0.5 * 1 * 65000 = 32500 USD notional
    assert _charge(model, "0.5", "65000", "1", M).amount == D("6.5")  # 2 bp
    assert _charge(model, "0.5", "65000", "1", T).amount == D("16.25")  # 5 bp
    only_taker = CommissionModel(bps=D("9"), taker_bps=D("5"))
    assert _charge(only_taker, "0.5", "65000", "1", M).amount == D("29.25")  # maker falls back to bps


def test_minimum_per_order_is_charged_once_and_topped_up_no_further() -> None:
    model = CommissionModel(per_lot=D("3.50"), minimum=D("1.00"))
    first = _charge(model, "0.10", "1.08505")  # own 0.35 -> the minimum 1.00
    assert (first.amount, first.order_raw, first.order_charged) == (D("1.00"), D("0.35"), D("1.00"))
    second = _charge(model, "0.10", "1.08505", order_raw=first.order_raw, order_charged=first.order_charged)
    assert second.amount == 0  # 0.70 accrued, still under the minimum paid
    third = _charge(model, "0.20", "1.08505", order_raw=second.order_raw, order_charged=second.order_charged)
    assert third.amount == D("0.40")  # 1.40 accrued: the order pays 1.40 in all
    assert third.order_charged == D("1.40")


def test_charged_in_the_base_asset() -> None:
    # 0.5 BTC at 65000, 10 bp = 32.5 USD = 0.0005 BTC
    model = CommissionModel(bps=D("10"), asset="base")
    c = _charge(model, "0.5", "65000", "1")
    assert (c.amount, c.asset) == (D("0.0005"), "EUR")  # the base currency of the instrument
    # the minimum is stated in the quote currency and converted at the fill price
    c = _charge(CommissionModel(bps=D("1"), minimum=D("13"), asset="base"), "0.5", "65000", "1")
    assert c.amount == D("0.0002")


def test_precision_rounds_half_even() -> None:
    model = CommissionModel(bps=D("0.5"), precision=D("0.01"))
    assert _charge(model, "2", "1.08505").amount == D("10.85")


def test_no_model_charges_nothing() -> None:
    assert _charge(CommissionModel(), "5", "1.1").amount == 0


def test_model_for_symbol_then_patterns_in_order() -> None:
    btc, fx, default = CommissionModel(bps=D(5)), CommissionModel(per_lot=D(3)), CommissionModel(per_lot=D(7))
    models = {"BTC*": btc, "EURUSD": fx, "*": default}
    assert model_for(models, "EURUSD") is fx
    assert model_for(models, "BTCUSD") is btc
    assert model_for(models, "GBPUSD") is default
    assert model_for({}, "GBPUSD") == CommissionModel()


@pytest.mark.parametrize("field", ["per_lot", "bps", "maker_bps", "taker_bps", "minimum"])
def test_negative_rates_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CommissionModel(**{field: D("-1")})
