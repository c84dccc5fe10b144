"""Commissions (pure): what a venue charges for a fill, exactly, in ``Decimal``.

A :class:`CommissionModel` combines, per fill:

* ``per_lot``: a fixed amount per lot traded (in the quote currency);
* ``bps``: basis points of the fill's notional (lots * contract size * price, in the quote currency), replaced by
  ``maker_bps`` / ``taker_bps`` for maker / taker fills when those are given;
* ``minimum``: the least an order pays in total. It is charged on the order's first fill and topped up no further
  once the fills' own commissions exceed it (the order's total is ``max(minimum, sum of fill commissions)``);
* ``asset``: ``quote`` charges in the quote currency; ``base`` charges in the base asset (the quote amount
  divided by the fill price, as crypto venues take their fee out of the coin bought).

``precision`` (a quantum such as ``0.01``) rounds each charge half-even; without it the amounts are exact (a
division by the price in the base asset keeps 28 significant digits).

Models are configured per broker (``brokers.<id>.commissions``) by symbol or fnmatch pattern: the exact symbol
first, then the patterns in the order given (:func:`model_for`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

import msgspec

from ordermesh.contract.wire import Liquidity

ZERO: Final = Decimal(0)
BPS: Final = Decimal(10_000)


class CommissionModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    per_lot: Decimal = ZERO
    bps: Decimal = ZERO
    maker_bps: Decimal | None = None
    taker_bps: Decimal | None = None
    minimum: Decimal = ZERO
    asset: Literal["quote", "base"] = "quote"
    precision: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("per_lot", "bps", "maker_bps", "taker_bps", "minimum"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise ValueError(f"commission {name} must be >= 0, got {value}")
        if self.precision is not None and (not self.precision.is_finite() or self.precision <= 0):
            raise ValueError(f"commission precision must be positive, got {self.precision}")

    def rate_bps(self, liquidity: Liquidity) -> Decimal:
        specific = self.maker_bps if liquidity is Liquidity.MAKER else self.taker_bps
        return self.bps if specific is None else specific

    def raw(self, lots: Decimal, price: Decimal, contract_size: Decimal, liquidity: Liquidity) -> Decimal:
        """The fill's own commission (before the order minimum), in the charged asset."""
        notional = lots * contract_size * price
        in_quote = self.per_lot * lots + notional * self.rate_bps(liquidity) / BPS
        if self.asset == "base":
            return in_quote / price
        return in_quote

    def _round(self, amount: Decimal) -> Decimal:
        if self.precision is None:
            return amount
        return amount.quantize(self.precision, rounding=ROUND_HALF_EVEN)


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    """One fill's charge, and the order's running totals after it (what the next fill needs)."""

    amount: Decimal
    asset: str
    order_raw: Decimal  # sum of the fills' own commissions so far
    order_charged: Decimal  # sum of what was charged so far (>= minimum once anything filled)


def charge(
    model: CommissionModel,
    *,
    lots: Decimal,
    price: Decimal,
    contract_size: Decimal,
    liquidity: Liquidity,
    base_currency: str,
    quote_currency: str,
    order_raw: Decimal = ZERO,
    order_charged: Decimal = ZERO,
) -> Charge:
    """The commission of one fill of an order that has so far accrued ``order_raw`` and paid ``order_charged``."""
    raw = order_raw + model._round(model.raw(lots, price, contract_size, liquidity))
    minimum = model.minimum if model.asset == "quote" else model._round(model.minimum / price)
    total = max(raw, minimum)
    amount = max(ZERO, total - order_charged)
    asset = base_currency if model.asset == "base" else quote_currency
    return Charge(amount=amount, asset=asset, order_raw=raw, order_charged=order_charged + amount)


def model_for(models: Mapping[str, CommissionModel], symbol: str) -> CommissionModel:
    """The model for ``symbol``: its own entry, else the first matching pattern, else no commission."""
    found = models.get(symbol)
    if found is not None:
        return found
    for pattern, model in models.items():
        if fnmatch.fnmatchcase(symbol, pattern):
            return model
    return CommissionModel()
