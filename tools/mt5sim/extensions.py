"""Opt-in answers the stock EA does not have (it answers SYMBOLINFO and BOOK with 65538 ERR_WRONG_ACTION).

``symbol_info(..., "extension")`` is ordermesh's documented SYMBOLINFO extension (deploy/mt5/README.md), flat;
``symbol_info(..., "ejtrader")`` is ejtraderMT's ``GetSymbolInfo`` (ejtraderLabs/Metatrader5-Docker:
Include/ejtraderMT/SymbolsInfo.mqh): ``{"error":false,"data":{...}}`` with its own field names, and
``ActionDoneOrError(ERR_MARKET_UNKNOWN_SYMBOL, "GetSymbolInfo", "Symbol not found")`` for an unknown symbol.
Broker-side properties no source shows (swaps, sessions, stops level, filling and order modes) are guesses.
BOOK is ordermesh's extension only; no EA source has it. Neither has ACCOUNT's ``margin_mode`` (the stock
GetAccountInfo does not read ACCOUNT_MARGIN_MODE): with ``margin_mode`` on, ACCOUNT adds its ENUM name.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tools.mt5sim.engine import ZERO, Account
from tools.mt5sim.errors import error_desc

ORDER_MODE_ALL = 127  # SYMBOL_ORDER_MARKET|LIMIT|STOP|STOP_LIMIT|SL|TP|CLOSEBY (guess: everything allowed)
FILLING_FOK = 1  # SYMBOL_FILLING_FOK (guess)


def _unknown(function: str, description: str) -> dict[str, Any]:
    return {"error": True, "lastError": "4301", "description": description, "function": function}


def symbol_info(account: Account, symbol: str, shape: str) -> dict[str, Any]:
    spec = account.specs.get(symbol)
    if spec is None:
        return (
            _unknown("GetSymbolInfo", "Symbol not found")
            if shape == "ejtrader"
            else _unknown("SymbolInfo", error_desc(4301))
        )
    tick_value = account.to_account(spec.point * spec.contract_size, spec.quote)
    if shape != "ejtrader":
        return {
            "error": False, "symbol": symbol, "digits": spec.digits, "point": spec.point,
            "contract_size": spec.contract_size, "volume_min": spec.volume_min, "volume_max": spec.volume_max,
            "volume_step": spec.volume_step, "tick_value": tick_value, "calc_mode": spec.calc_mode,
            "currency_base": spec.base, "currency_profit": spec.quote, "leverage": account.leverage,
        }  # fmt: skip
    bids = [t.bid for t in account.ticks[symbol]]
    asks = [t.ask for t in account.ticks[symbol]]
    bid, ask = account.bid[symbol], account.ask[symbol]
    data = {
        "name": symbol, "description": spec.description, "currency_base": spec.base, "currency_profit": spec.quote,
        "currency_margin": spec.base if spec.calc_mode == "FOREX" else spec.quote, "type": spec.calc_mode,
        "bid": bid, "ask": ask, "last": ZERO, "bidhigh": max(bids), "bidlow": min(bids), "askhigh": max(asks),
        "asklow": min(asks), "lasthigh": ZERO, "lastlow": ZERO, "point": spec.point, "digits": spec.digits,
        "spread": int((ask - bid) / spec.point), "spread_float": True, "volume_min": spec.volume_min,
        "volume_max": spec.volume_max, "volume_step": spec.volume_step, "volume_limit": ZERO,
        "trade_contract_size": spec.contract_size, "trade_tick_size": spec.point, "trade_tick_value": tick_value,
        "trade_tick_value_profit": tick_value, "trade_tick_value_loss": tick_value,
        "trade_mode": "SYMBOL_TRADE_MODE_FULL", "trade_calc_mode": f"SYMBOL_CALC_MODE_{spec.calc_mode}",
        "trade_stops_level": 0, "trade_freeze_level": 0, "swap_mode": "SYMBOL_SWAP_MODE_POINTS", "swap_long": ZERO,
        "swap_short": ZERO, "swap_rollover3days": "WEDNESDAY", "session_volume": ZERO, "session_deals": 0,
        "session_buy_orders": 0, "session_sell_orders": 0, "expiration_time": 0, "margin_hedged_use_leg": False,
        "order_mode": ORDER_MODE_ALL, "filling_mode": FILLING_FOK,
    }  # fmt: skip
    return {"error": False, "data": data}


def margin_mode_name(hedging: bool) -> str:
    """``EnumToString(ENUM_ACCOUNT_MARGIN_MODE(AccountInfoInteger(ACCOUNT_MARGIN_MODE)))``."""
    return "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING" if hedging else "ACCOUNT_MARGIN_MODE_RETAIL_NETTING"


def book(account: Account, symbol: str, depth: int) -> dict[str, Any]:
    """``{"action":"BOOK","symbol":S,"depth":N}`` -> ``bids``/``asks`` as ``[price, size]`` (made-up sizes)."""
    if symbol not in account.specs:
        return _unknown("MarketBook", error_desc(4301))
    depth = max(1, min(depth or 5, 10))
    point = account.specs[symbol].point
    bids = [[account.bid[symbol] - point * i, Decimal(1 + i)] for i in range(depth)]
    asks = [[account.ask[symbol] + point * i, Decimal(1 + i)] for i in range(depth)]
    return {"error": False, "symbol": symbol, "bids": bids, "asks": asks}
