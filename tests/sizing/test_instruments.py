"""Instrument specs: the shipped file, gateway reports over it, pip values and margins in the account currency."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ordermesh.platform.config import ConfigError, OrderMeshConfig
from ordermesh.sizing.instruments import (
    InstrumentOverride,
    InstrumentSpec,
    PriceBook,
    conversion_rate,
    decode_override,
    encode_override,
    instrument_key,
    load_instruments,
    margin_per_lot,
    parse_instruments,
    pip_value_per_lot,
    price_lookup,
    resolve_path,
)

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SPECS = load_instruments(ROOT / "deploy" / "instruments.yaml")


def prices(**pairs: str):  # type: ignore[no-untyped-def]
    table = {k: D(v) for k, v in pairs.items()}
    return table.get


# ------------------------------------------------------------------------------------- the file


def test_the_shipped_file_loads_every_kind() -> None:
    assert {"EURUSD", "GBPUSD", "USDJPY", "EURGBP", "XAUUSD", "BTCUSD"} <= set(SPECS)
    eurusd = SPECS["EURUSD"]
    assert (eurusd.kind, eurusd.base_currency, eurusd.quote_currency) == ("forex", "EUR", "USD")
    assert (eurusd.pip_size, eurusd.contract_size, eurusd.leverage) == (D("0.0001"), D(100000), D(30))
    assert (eurusd.lot_step, eurusd.min_lot, eurusd.max_lot) == (D("0.01"), D("0.01"), D(100))
    assert SPECS["XAUUSD"].kind == "cfd"
    assert (SPECS["BTCUSD"].kind, SPECS["BTCUSD"].lot_step) == ("crypto_linear", D("0.001"))
    # every symbol the demo strategies trade by default is known to the sizer
    assert set(OrderMeshConfig().demo.symbols) <= set(SPECS)


def test_the_configured_path_resolves_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = OrderMeshConfig().sizer.instruments_file
    assert resolve_path(path) == ROOT / "deploy" / "instruments.yaml"
    assert load_instruments(path) == SPECS


def test_file_problems_are_one_line_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read instruments file .*nope\.yaml"):
        load_instruments(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as exc:
        parse_instruments("instruments:\n  EURUSD: {kind: forex, base_currency: EUR}\n", "x.yaml")
    assert str(exc.value) == "x.yaml: instruments.EURUSD: Object missing required field `quote_currency`"
    with pytest.raises(ConfigError, match=r"^x.yaml: instruments.AB: lot_step must be positive, got 0$"):
        parse_instruments(
            "instruments:\n  AB: {kind: cfd, base_currency: A, quote_currency: B, pip_size: '1', contract_size: '1', "
            "lot_step: '0'}\n",
            "x.yaml",
        )
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_instruments("instruments: [", "x.yaml")
    with pytest.raises(ConfigError, match="unknown field `colour`"):
        parse_instruments("instruments: {}\ncolour: red\n", "x.yaml")
    assert parse_instruments("", "empty.yaml") == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pip_size": D(0)}, "pip_size must be positive, got 0"),
        ({"leverage": D(-1)}, "leverage must be positive, got -1"),
        ({"min_lot": D(2), "max_lot": D(1)}, "need 0 < min_lot <= max_lot, got min_lot 2, max_lot 1"),
        ({"min_lot": D("0.015")}, "min_lot must be a multiple of lot_step 0.01, got 0.015"),
        ({"base_currency": ""}, "base_currency is required"),
        ({"tick_size": D(0)}, "tick_size must be positive, got 0"),
    ],
)
def test_spec_validation(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = dict(
        kind="forex", base_currency="EUR", quote_currency="USD", pip_size=D("0.0001"), contract_size=D(100000)
    )
    with pytest.raises(ValueError) as exc:
        InstrumentSpec(**{**base, **fields})  # type: ignore[arg-type]
    assert str(exc.value) == message


# ------------------------------------------------------------------------------- gateway reports


def test_a_gateway_report_wins_field_by_field() -> None:
    report = InstrumentOverride(lot_step=D("0.1"), min_lot=D("0.1"), leverage=D(50))
    merged = report.apply(SPECS["EURUSD"])
    assert (merged.lot_step, merged.min_lot, merged.leverage) == (D("0.1"), D("0.1"), D(50))
    assert (merged.pip_size, merged.contract_size, merged.max_lot) == (D("0.0001"), D(100000), D(100))
    assert decode_override(encode_override(report)) == report
    assert instrument_key("paper", "BTC/USDT:USDT") == "paper.BTC/USDT=3AUSDT"


def test_a_report_for_an_unlisted_symbol_must_be_complete() -> None:
    full = InstrumentOverride(
        kind="cfd", base_currency="US500", quote_currency="USD", pip_size=D("0.1"), contract_size=D(1)
    )
    assert full.apply(None).contract_size == 1
    with pytest.raises(ValueError, match="incomplete instrument report"):
        InstrumentOverride(lot_step=D("0.1")).apply(None)
    with pytest.raises(ValueError, match=r"min_lot must be a multiple of lot_step 0\.1, got 0\.01"):
        InstrumentOverride(lot_step=D("0.1")).apply(SPECS["EURUSD"])  # its min lot 0.01 no longer fits


# ------------------------------------------------------------------------------------ pip values


def test_pip_value_in_the_quote_currency_needs_no_price() -> None:
    value, line = pip_value_per_lot(SPECS["EURUSD"], "USD", prices())
    assert value == D(10)
    assert line == "Pip value per lot = 0.0001 * 100000 = 10.0000 USD"
    assert pip_value_per_lot(SPECS["XAUUSD"], "USD", prices())[0] == D(1)  # 0.01 * 100 oz
    assert pip_value_per_lot(SPECS["BTCUSD"], "USD", prices())[0] == D(1)


def test_pip_value_of_usdjpy_on_a_usd_account() -> None:
    value, line = pip_value_per_lot(SPECS["USDJPY"], "USD", prices(USDJPY="150"))
    assert value == D("6.666666666666666666666666666")  # 1000 JPY / 150, rounded down
    assert line == "Pip value per lot = 0.01 * 100000 = 1000.00 JPY / USDJPY 150 = 6.6667 USD"


def test_pip_value_of_eurgbp_on_a_usd_account() -> None:
    value, line = pip_value_per_lot(SPECS["EURGBP"], "USD", prices(GBPUSD="1.25"))
    assert value == D("12.5")  # 10 GBP * 1.25
    assert line.endswith("10.0000 GBP * GBPUSD 1.25 = 12.5000 USD")
    assert pip_value_per_lot(SPECS["EURGBP"], "USD", prices(USDGBP="0.8"))[0] == D("12.5")
    with pytest.raises(LookupError) as exc:
        pip_value_per_lot(SPECS["EURGBP"], "USD", prices(EURUSD="1.08"))
    assert str(exc.value) == "no price to convert GBP to USD (needs GBPUSD or USDGBP)"


def test_pip_value_on_a_eur_account() -> None:
    assert pip_value_per_lot(SPECS["EURUSD"], "EUR", prices(EURUSD="1.25"))[0] == D(8)  # 10 USD / 1.25
    assert pip_value_per_lot(SPECS["EURGBP"], "GBP", prices())[0] == D(10)


def test_conversion_rates() -> None:
    assert conversion_rate("USD", "USD", prices()) == 1
    assert conversion_rate("EUR", "USD", prices(EURUSD="1.1")) == D("1.1")
    assert conversion_rate("USD", "EUR", prices(EURUSD="1.25")) == D("0.8")
    assert conversion_rate("USD", "JPY", prices()) is None


# --------------------------------------------------------------------------------------- margins


def test_forex_margin_is_in_the_base_currency_converted() -> None:
    value, line = margin_per_lot(SPECS["EURUSD"], "USD", D("1.085"), prices(EURUSD="1.085"))
    assert value == D("3616.666666666666666666666666")  # 100000 / 30 EUR * 1.085
    assert line == "Margin per lot = 100000 * 1 / 30 = 3333.33 EUR * EURUSD rate 1.085 = 3616.67 USD"
    usdjpy, line = margin_per_lot(SPECS["USDJPY"], "USD", D(150), prices(USDJPY="150"))
    assert usdjpy == D("3333.333333333333333333333333")  # the base is the account currency: no price needed
    assert line == "Margin per lot = 100000 * 1 / 30 = 3333.33 USD"
    # EURGBP on a USD account: the base EUR converts through EURUSD, not the pair's own price
    eurgbp, _ = margin_per_lot(SPECS["EURGBP"], "USD", D("0.86"), prices(EURGBP="0.86", EURUSD="1.2"))
    assert eurgbp == D("3999.999999999999999999999999")
    with pytest.raises(LookupError, match="no price to convert EUR to USD"):
        margin_per_lot(SPECS["EURGBP"], "USD", D("0.86"), prices(EURGBP="0.86"))


def test_cfd_and_crypto_margin_are_notional_over_leverage_in_the_quote_currency() -> None:
    gold, line = margin_per_lot(SPECS["XAUUSD"], "USD", D(2000), prices())
    assert gold == D(10000)  # 100 oz * 2000 / 20
    assert line == "Margin per lot = 100 * 2000 * 1 / 20 = 10000.00 USD"
    btc, _ = margin_per_lot(SPECS["BTCUSD"], "USD", D(65000), prices())
    assert btc == D(32500)  # 1 BTC * 65000 / 2
    half_rate = InstrumentOverride(margin_rate=D("0.5")).apply(SPECS["BTCUSD"])
    assert margin_per_lot(half_rate, "USD", D(65000), prices())[0] == D(16250)
    with pytest.raises(LookupError, match="no price for the instrument to compute its cfd margin"):
        margin_per_lot(SPECS["XAUUSD"], "USD", None, prices())


# ---------------------------------------------------------------------------------------- prices


def test_price_book_keeps_the_latest_mid_until_it_is_stale() -> None:
    now = [100.0]
    book = PriceBook(max_age_s=5, clock=lambda: now[0])
    book.update("EURUSD", D("1.0849"), D("1.0851"))
    assert book.get("EURUSD") == D("1.0850")
    book.update("EURUSD", D(0), D("1.09"))  # a one-sided quote has no mid: the last one stays
    assert book.get("EURUSD") == D("1.0850")
    now[0] = 105.0
    assert book.get("EURUSD") == D("1.0850")
    now[0] = 105.1
    assert book.get("EURUSD") is None
    assert book.get("GBPUSD") is None
    book.set("GBPUSD", D("1.27"))
    assert (book.get("GBPUSD"), len(book)) == (D("1.27"), 2)


def test_the_orders_own_price_answers_for_its_symbol() -> None:
    of = price_lookup({"EURUSD": D("1.08"), "GBPUSD": D("1.27")}, "EURUSD", D("1.09"))
    assert (of("EURUSD"), of("GBPUSD"), of("USDJPY")) == (D("1.09"), D("1.27"), None)
    assert price_lookup(None, "EURUSD", None)("EURUSD") is None
