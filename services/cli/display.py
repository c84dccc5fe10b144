"""How the command line shows numbers and messages: prices and quantities at their instrument's precision, money at
two decimals, and messages as one readable line (``tail``); ``--json`` keeps the raw form."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cached_property
from typing import Any

import msgspec

from ordermesh.platform.config import OrderMeshConfig

#: Places when the instrument is not known: enough for FX prices, never a 28-digit quotient.
DEFAULT_PRICE_PLACES = 5
DEFAULT_QTY_PLACES = 8


def money(value: Decimal) -> Decimal:
    """Two decimals; ``+ 0`` turns a rounded ``-0.00`` into ``0.00``."""
    return value.quantize(Decimal("0.01"), ROUND_HALF_EVEN) + 0


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


def _at(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN) + 0


class Display:
    """Precision per symbol from the instrument file the sizer uses (``sizer.instruments_file``)."""

    def __init__(self, config: OrderMeshConfig) -> None:
        self._path = config.sizer.instruments_file

    @cached_property
    def _specs(self) -> dict[str, Any]:
        from ordermesh.sizing.instruments import load_instruments

        try:
            return load_instruments(self._path)
        except Exception:  # the display degrades to defaults; the services report a bad file themselves
            return {}

    def price_places(self, symbol: str) -> int:
        spec = self._specs.get(symbol)
        if spec is None:
            return DEFAULT_PRICE_PLACES
        if spec.tick_size is not None:
            return _places(spec.tick_size)
        return _places(spec.pip_size) + 1  # prices quote a fractional pip

    def price(self, symbol: str, value: Decimal | None) -> str:
        return "-" if value is None else str(_at(value, self.price_places(symbol)))

    def qty(self, symbol: str, value: Decimal) -> str:
        spec = self._specs.get(symbol)
        places = _places(spec.lot_step) if spec is not None else DEFAULT_QTY_PLACES
        exact = value.normalize()
        # never hide a quantity finer than the step (it is real): show it whole, else at the step's places
        if _places(exact) > places:
            return f"{exact:f}"
        return str(_at(value, places))


def table(heads: tuple[str, ...], rows: list[tuple[str, ...]], right: frozenset[int] | set[int] = frozenset()) -> str:
    """A text table: a header, a rule, the rows; columns in ``right`` (numbers) right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(heads)]

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(heads), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def setting(value: Any) -> str:
    """A configuration value as a person writes it: no reprs, Decimals as numbers, structs as ``k=v``."""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, msgspec.Struct):
        fields = msgspec.structs.asdict(value)
        return " ".join(f"{k}={setting(v)}" for k, v in fields.items() if v is not None)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {setting(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return "/".join(setting(v) for v in value) or "-"
    return "-" if value is None else str(value)


def message_line(msg: Any, display: Display) -> str:
    """``HH:MM:SS.mmm Type field=value ...``: identifiers and numbers as text, times as UTC clock times."""
    fields = msgspec.structs.asdict(msg)
    stamp = ""
    for key in ("ts_ns", "intent_ts_ns", "created_ns"):
        ns = fields.pop(key, None)
        if isinstance(ns, int) and ns > 0 and not stamp:
            stamp = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%H:%M:%S.%f")[:-3] + " "
    symbol = str(fields.get("symbol") or "")
    parts = []
    for key, value in fields.items():
        if value is None or value == "" or value == {} or value == []:
            continue
        if isinstance(value, Decimal):
            text = display.price(symbol, value) if ("px" in key or "price" in key) else f"{value.normalize():f}"
        elif hasattr(value, "value") and not isinstance(value, int | float):
            text = str(value.value)  # enums
        elif isinstance(value, msgspec.Struct):
            text = msgspec.json.encode(value).decode()
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return f"{stamp}{type(msg).__name__} " + " ".join(parts)
