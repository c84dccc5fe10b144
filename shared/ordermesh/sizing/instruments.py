"""Instrument specifications: what one lot of a symbol is worth, how it may be sized, what margin it takes.

Specs come from a YAML file shipped in ``deploy/instruments.yaml`` (``sizer.instruments_file``); a gateway may
report what its broker says about a symbol into the KV bucket ``om_instruments`` under
``kv_key(broker_id, symbol)`` (msgpack of :class:`InstrumentOverride`), and what it reports wins field by field.

Money here is ``Decimal``. Conversions to the account currency use prices of currency pairs (``EURUSD``,
``USDJPY``): a direct pair multiplies, an inverse pair divides; all arithmetic rounds down (``FLOOR``: it can
only ever shrink a pip value or a margin figure, by the last of 28 digits).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import yaml

from ordermesh.contract.subjects import kv_key
from ordermesh.platform.config import ConfigError
from ordermesh.sizing.kelly import FLOOR

Kind = Literal["forex", "cfd", "crypto_linear"]
ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
TWO: Final = Decimal(2)

#: Where the shipped file lives when a relative path is not found from the working directory.
REPO_ROOT: Final = Path(__file__).resolve().parents[3]  # shared/ordermesh/sizing/ -> the repository


class InstrumentSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One symbol at one broker.

    * ``forex``: margin = lots * contract_size * margin_rate / leverage, in the base currency.
    * ``cfd`` and ``crypto_linear``: margin = lots * contract_size * price * margin_rate / leverage, in the
      quote currency (a linear crypto contract is margined and settled in its quote currency).

    A pip of one lot is worth ``pip_size * contract_size`` in the quote currency, in every kind.
    """

    kind: Kind
    base_currency: str
    quote_currency: str
    pip_size: Decimal
    contract_size: Decimal
    lot_step: Decimal = Decimal("0.01")
    min_lot: Decimal = Decimal("0.01")
    max_lot: Decimal = Decimal("100")
    leverage: Decimal = Decimal("30")
    margin_rate: Decimal = Decimal("1")
    tick_size: Decimal | None = None  # smallest price increment, when known (not used for sizing)
    min_notional: Decimal | None = None  # smallest order value the venue accepts (quote currency), when known

    def __post_init__(self) -> None:
        for name in ("pip_size", "contract_size", "lot_step", "leverage", "margin_rate"):
            value = getattr(self, name)
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.tick_size is not None and (not self.tick_size.is_finite() or self.tick_size <= 0):
            raise ValueError(f"tick_size must be positive, got {self.tick_size}")
        if not self.min_lot.is_finite() or not self.max_lot.is_finite() or not 0 < self.min_lot <= self.max_lot:
            raise ValueError(f"need 0 < min_lot <= max_lot, got min_lot {self.min_lot}, max_lot {self.max_lot}")
        for name in ("min_lot", "max_lot"):
            if getattr(self, name) % self.lot_step:
                raise ValueError(f"{name} must be a multiple of lot_step {self.lot_step}, got {getattr(self, name)}")
        for name in ("base_currency", "quote_currency"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")

    def describe(self, symbol: str) -> str:
        return (
            f"Instrument {symbol} ({self.kind}, {self.base_currency}/{self.quote_currency}): pip size "
            f"{self.pip_size}, contract {self.contract_size}, lots {self.min_lot}..{self.max_lot} step "
            f"{self.lot_step}, leverage {self.leverage}, margin rate {self.margin_rate}"
        )


class InstrumentOverride(msgspec.Struct, frozen=True, kw_only=True):
    """What a gateway reports about a symbol; each field given replaces the file's value."""

    kind: Kind | None = None
    base_currency: str | None = None
    quote_currency: str | None = None
    pip_size: Decimal | None = None
    contract_size: Decimal | None = None
    lot_step: Decimal | None = None
    min_lot: Decimal | None = None
    max_lot: Decimal | None = None
    leverage: Decimal | None = None
    margin_rate: Decimal | None = None
    tick_size: Decimal | None = None
    min_notional: Decimal | None = None

    def apply(self, spec: InstrumentSpec | None) -> InstrumentSpec:
        """The spec with this report's fields over it. Raises ValueError if the result is incomplete or bad."""
        given = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        if spec is not None:
            return InstrumentSpec(**{**msgspec.structs.asdict(spec), **given})
        try:
            return InstrumentSpec(**given)
        except TypeError as exc:  # a required field missing: the gateway's report alone is not a spec
            raise ValueError(f"incomplete instrument report: {exc}") from None


def instrument_key(broker_id: str, symbol: str) -> str:
    """Key of a gateway's report in the ``om_instruments`` bucket."""
    return kv_key(broker_id, symbol)


_override_decoder = msgspec.msgpack.Decoder(InstrumentOverride)


def encode_override(report: InstrumentOverride) -> bytes:
    return msgspec.msgpack.encode(report)


def decode_override(data: bytes) -> InstrumentOverride:
    return _override_decoder.decode(data)


# ------------------------------------------------------------------------------------- the file


class _InstrumentsFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    instruments: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as given, or (relative and not found from the working directory) under the repository root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def parse_instruments(text: str, source: str = "instruments") -> dict[str, InstrumentSpec]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        raw = msgspec.convert(data or {}, _InstrumentsFile, strict=False).instruments
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    specs = {}
    for symbol, entry in raw.items():
        # One symbol at a time, so the error names it (msgspec writes a mapping key as ``[...]``).
        try:
            specs[str(symbol)] = msgspec.convert(entry, InstrumentSpec, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: instruments.{symbol}: {exc}") from None
    return specs


def load_instruments(path: str | os.PathLike[str]) -> dict[str, InstrumentSpec]:
    """Specs by symbol from a YAML file (``instruments: {SYMBOL: {...}}``); ConfigError names the problem."""
    resolved = resolve_path(path)
    try:
        text = resolved.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read instruments file {path}: {exc.strerror}") from None
    return parse_instruments(text, str(path))


# ----------------------------------------------------------------------------------- conversion

PriceOf = Callable[[str], Decimal | None]


def conversion_rate(from_ccy: str, to_ccy: str, price_of: PriceOf) -> Decimal | None:
    """Units of ``to_ccy`` per unit of ``from_ccy`` from the pair's price (direct or inverse), or None."""
    if from_ccy == to_ccy:
        return ONE
    direct = price_of(from_ccy + to_ccy)
    if direct is not None:
        return direct
    inverse = price_of(to_ccy + from_ccy)
    if inverse is not None:
        return FLOOR.divide(ONE, inverse)
    return None


def missing_rate(from_ccy: str, to_ccy: str) -> str:
    return f"no price to convert {from_ccy} to {to_ccy} (needs {from_ccy}{to_ccy} or {to_ccy}{from_ccy})"


def pip_value_per_lot(spec: InstrumentSpec, account_currency: str, price_of: PriceOf) -> tuple[Decimal, str]:
    """The value of one pip of one lot in the account currency, with the audit line.

    Raises LookupError when the quote currency cannot be converted (no price for the pair).
    """
    in_quote = FLOOR.multiply(spec.pip_size, spec.contract_size)
    q = spec.quote_currency
    if q == account_currency:
        return in_quote, f"Pip value per lot = {spec.pip_size!s} * {spec.contract_size!s} = {in_quote!s} {q}"
    direct = price_of(q + account_currency)
    if direct is not None:
        value = FLOOR.multiply(in_quote, direct)
        how = f"* {q}{account_currency} {direct!s}"
    else:
        inverse = price_of(account_currency + q)
        if inverse is None:
            raise LookupError(missing_rate(q, account_currency))
        # One division (not * 1/price) so the figure is the correctly rounded-down quotient.
        value = FLOOR.divide(in_quote, inverse)
        how = f"/ {account_currency}{q} {inverse!s}"
    return value, (
        f"Pip value per lot = {spec.pip_size!s} * {spec.contract_size!s} = {in_quote!s} {q} {how} "
        f"= {value:.4f} {account_currency}"
    )


@functools.lru_cache(maxsize=1024)
def _forex_margin(spec: InstrumentSpec) -> tuple[Decimal, str]:
    # A forex lot's margin in its base currency depends on the spec alone: computed once per spec.
    in_base = FLOOR.divide(FLOOR.multiply(spec.contract_size, spec.margin_rate), spec.leverage)
    return (
        in_base,
        f"{spec.contract_size!s} * {spec.margin_rate!s} / {spec.leverage!s} = {in_base:.2f} {spec.base_currency}",
    )


def margin_per_lot(
    spec: InstrumentSpec, account_currency: str, price: Decimal | None, price_of: PriceOf
) -> tuple[Decimal, str]:
    """Initial margin of one lot in the account currency, with the audit line.

    ``price`` is the instrument's own price (needed for CFD and crypto; for forex only to convert the base
    currency when the pair is that conversion). Raises LookupError when a price is missing.
    """
    if spec.kind == "forex":
        ccy = spec.base_currency
        in_ccy, formula = _forex_margin(spec)
    else:
        if price is None:
            raise LookupError(f"no price for the instrument to compute its {spec.kind} margin")
        ccy = spec.quote_currency
        notional = FLOOR.multiply(FLOOR.multiply(spec.contract_size, price), spec.margin_rate)
        in_ccy = FLOOR.divide(notional, spec.leverage)
        formula = f"{spec.contract_size!s} * {price!s} * {spec.margin_rate!s} / {spec.leverage!s} = {in_ccy:.2f} {ccy}"
    if ccy == account_currency:
        return in_ccy, f"Margin per lot = {formula}"
    rate = conversion_rate(ccy, account_currency, price_of)
    if rate is None:
        raise LookupError(missing_rate(ccy, account_currency))
    value = FLOOR.multiply(in_ccy, rate)
    return value, f"Margin per lot = {formula} * {ccy}{account_currency} rate {rate!s} = {value:.2f} {account_currency}"


# ---------------------------------------------------------------------------------------- prices


class PriceBook:
    """Latest mid price per symbol (from quotes), forgotten after ``max_age_s``.

    ``clock`` is injectable so staleness is testable without sleeping.
    """

    def __init__(self, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._mid: dict[str, tuple[Decimal, float]] = {}

    def update(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        if bid > 0 and ask > 0 and bid.is_finite() and ask.is_finite():
            self._mid[symbol] = ((bid + ask) / TWO, self.clock())

    def set(self, symbol: str, price: Decimal) -> None:
        self._mid[symbol] = (price, self.clock())

    def get(self, symbol: str) -> Decimal | None:
        found = self._mid.get(symbol)
        if found is None or self.clock() - found[1] > self.max_age_s:
            return None
        return found[0]

    def __len__(self) -> int:
        return len(self._mid)


def price_lookup(prices: Mapping[str, Decimal] | PriceBook | None, symbol: str, own: Decimal | None) -> PriceOf:
    """A price function that answers ``symbol`` with ``own`` (the order's own price) when given."""
    get = (lambda _s: None) if prices is None else prices.get

    def price_of(s: str) -> Decimal | None:
        if s == symbol and own is not None:
            return own
        return get(s)

    return price_of
