"""JSON exactly as the EA reads and writes it: a port of JAson's ``CJAVal`` (Include/json.mqh, v1.12).

Reading (``CJAVal::Deserialize`` / ``ExtrStr`` / ``Unescape`` / ``FromStr``, ported line by line): unknown
characters are skipped, a truncated document may still parse, keys are found from the end (the last duplicate
wins), a missing key reads as ``""`` / 0 (``operator[]`` adds an undefined value), a number keeps its text (so
``ToStr`` of 5 is ``"5"``), ``ToInt`` of a string is ``StringToInteger`` of it and ``ToInt``/``ToDbl`` of
``true`` are 0 (``Deserialize`` sets only ``m_bv``).

Writing (``CJAVal::Serialize`` / ``Escape``): doubles with 5 decimals, ``""`` as ``null``, ``/`` escaped as
``\\/``, keys written raw, and an undefined value (:data:`UNDEF`, a value never assigned) writes nothing at
all, not even its comma, while the value after it still writes one (``[UNDEF, 1]`` is ``[,1]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Any


class Undefined(Enum):
    """A CJAVal of type ``jtUNDEF``: a key or element created by ``operator[]``/``Add`` and never assigned."""

    UNDEF = 0


UNDEF = Undefined.UNDEF

_INT = re.compile(r"\s*([+-]?\d+)")
_DBL = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_I64 = 2**63


def string_to_integer(text: str) -> int:
    """MQL5 ``StringToInteger``: the leading integer, 0 without one (saturating at the long range: guess)."""
    m = _INT.match(text)
    return max(-_I64, min(_I64 - 1, int(m.group(1)))) if m else 0


def string_to_double(text: str) -> Decimal:
    """MQL5 ``StringToDouble``: the leading number, 0 without one; kept as a Decimal of its text."""
    m = _DBL.match(text)
    try:
        return Decimal(m.group(1)) if m else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


class JVal:
    """One ``CJAVal`` as ``Deserialize`` leaves it: type, the four scalar views and the children."""

    __slots__ = ("bv", "dv", "items", "iv", "key", "lkey", "parent", "sv", "type")

    def __init__(self, parent: JVal | None = None, type_: str = "undef") -> None:
        self.parent, self.type = parent, type_
        self.bv, self.iv, self.dv, self.sv = False, 0, Decimal(0), ""
        self.key = self.lkey = ""
        self.items: list[JVal] = []

    def __getitem__(self, key: str) -> JVal:
        """``operator[]`` for reading: ``FindKey`` searches from the end; a missing key is a fresh undefined value."""
        for item in reversed(self.items):
            if item.key == key:
                return item
        return JVal(self)

    def to_str(self) -> str:
        return self.sv

    def to_int(self) -> int:
        return self.iv

    def to_dbl(self) -> Decimal:
        return self.dv

    def from_str(self, text: str) -> None:
        """``FromStr(jtSTR, ...)``."""
        self.sv = _unescape(text)
        self.type = "str"
        self.iv, self.dv, self.bv = string_to_integer(self.sv), string_to_double(self.sv), True


def deserialize(message: str) -> tuple[JVal, bool]:
    """``CJAVal::Deserialize(string, CP_ACP)``: (the value as far as it was read, whether the parse succeeded).

    The string goes through ``StringToCharArray`` with the ANSI code page (Windows-1252 assumed: guess), so
    characters outside it become ``?``, and the array ends with the terminating NUL the parser relies on."""
    root = JVal()
    parser = _Parser(message.encode("cp1252", errors="replace") + b"\0")
    return root, parser.parse(root)


class _Parser:
    def __init__(self, js: bytes) -> None:
        self.js, self.slen, self.i = js, len(js), 0

    def text(self, start: int, length: int) -> str:
        """``GetStr``: ``CharArrayToString`` stops at a NUL."""
        return self.js[start : start + length].split(b"\0", 1)[0].decode("cp1252", errors="replace")

    def parse(self, v: JVal) -> bool:
        """One ``switch`` of ``CJAVal::Deserialize(char&[], int, int&)`` per character."""
        js, slen = self.js, self.slen
        while self.i < slen:
            c = chr(js[self.i])
            if c == "\0":
                break
            if c == "[":
                if v.type != "undef":
                    return False
                v.type = "array"
                self.i += 1
                val = JVal(v)
                while self.parse(val):
                    if val.type != "undef":
                        v.items.append(val)
                    if val.type in ("int", "dbl", "array"):
                        self.i += 1
                    val = JVal(v)
                    if js[self.i] == ord("]"):
                        break
                    self.i += 1
                    if self.i >= slen:
                        return False
                if self.i >= slen:
                    return False
                return js[self.i] in (ord("]"), 0)
            if c == "]":
                return v.parent is not None and v.parent.type == "array"
            if c == ":":
                if v.lkey == "":
                    return False
                child = JVal(v)
                child.key, v.lkey = v.lkey, ""
                v.items.append(child)
                self.i += 1
                if not self.parse(child):
                    return False
            elif c == ",":
                if v.parent is None and v.type != "obj":
                    return False
                if v.parent is not None:
                    if v.parent.type not in ("array", "obj"):
                        return False
                    if v.parent.type == "array" and v.type == "undef":
                        return True
            elif c == "{":
                if v.type != "undef":
                    return False
                v.type = "obj"
                self.i += 1
                if not self.parse(v):
                    return False
                if self.i >= slen:
                    return False
                return js[self.i] in (ord("}"), 0)
            elif c == "}":
                return v.type == "obj"
            elif c in "tTfF":
                return self._literal(v, "bool")
            elif c in "nN":
                return self._literal(v, "null")
            elif c in "0123456789-+.":
                return self._number(v)
            elif c == '"':
                if v.type == "obj":
                    self.i += 1
                    start = self.i
                    if not self._extract_string():
                        return False
                    v.lkey = self.text(start, self.i - start)
                else:
                    if v.type != "undef":
                        return False
                    self.i += 1
                    start = self.i
                    if not self._extract_string():
                        return False
                    v.from_str(self.text(start, self.i - start))
                    return True
            self.i += 1
        return True

    def _literal(self, v: JVal, kind: str) -> bool:
        if v.type != "undef":
            return False
        v.type = kind
        i = self.i
        if kind == "bool":
            if i + 3 < self.slen and self.text(i, 4).lower() == "true":
                v.bv, self.i = True, i + 3
                return True
            if i + 4 < self.slen and self.text(i, 5).lower() == "false":
                v.bv, self.i = False, i + 4
                return True
            return False
        if i + 3 < self.slen and self.text(i, 4).lower() == "null":
            self.i = i + 3
            return True
        return False

    def _number(self, v: JVal) -> bool:
        if v.type != "undef":
            return False
        js, start, dbl = self.js, self.i, False
        while js[self.i] != 0 and self.i < self.slen:
            self.i += 1
            if chr(js[self.i]) not in "0123456789+-.eE" or js[self.i] == 0:
                break
            dbl = dbl or chr(js[self.i]) in ".eE"
        v.sv = self.text(start, self.i - start)
        if dbl:
            v.type, v.dv = "dbl", string_to_double(v.sv)
            v.iv = int(v.dv)  # (long) m_dv truncates
        else:
            v.type, v.iv = "int", string_to_integer(v.sv)
            v.dv = Decimal(v.iv)
        v.bv = v.iv != 0
        self.i -= 1
        return True

    def _extract_string(self) -> bool:
        """``ExtrStr``: to the closing quote; a ``\\u`` escape must have hex digits."""
        js = self.js
        while js[self.i] != 0 and self.i < self.slen:
            c = chr(js[self.i])
            if c == '"':
                break
            if c == "\\" and self.i + 1 < self.slen:
                self.i += 1
                if chr(js[self.i]) == "u":
                    self.i += 1
                    for _ in range(4):
                        if not (self.i < self.slen and js[self.i] != 0):
                            break
                        if chr(js[self.i]) not in "0123456789abcdefABCDEF":
                            return False
                        self.i += 1
                    self.i -= 1
            self.i += 1
        return True


_UNESCAPES = {"\\": "\\", '"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i < n - 1:
            nxt = text[i + 1]
            if nxt in _UNESCAPES:
                c, i = _UNESCAPES[nxt], i + 1
            elif nxt == "u":
                i, k = i + 2, 0
                for j in range(4):
                    if i >= n or text[i] not in "0123456789abcdefABCDEF":
                        break
                    k += int(text[i], 16) * 16 ** (3 - j)
                    i += 1
                i -= 1
                c = chr(k)
        out.append(c)
        i += 1
    return "".join(out)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FIVE = Decimal("0.00001")


def double_to_string(value: Decimal | float | int) -> str:
    """``DoubleToString(x, 5)``, the only precision ``Serialize`` uses."""
    return f"{Decimal(str(value)).quantize(_FIVE, rounding=ROUND_HALF_UP):f}"


def serialize(value: Any) -> str:
    """``CJAVal::Serialize`` of a value built from dicts, lists, str, int (``long``), bool, Decimal/float
    (``double``), None (``jtNULL``) and :data:`UNDEF`. Python ints are written as MQL ``long``."""
    if value is UNDEF:
        return ""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str((value + _I64) % 2**64 - _I64)
    if isinstance(value, Decimal | float):
        return double_to_string(value)
    if isinstance(value, str):
        escaped = "".join(_ESCAPES.get(ch, ch) for ch in value)
        return f'"{escaped}"' if escaped else "null"
    if isinstance(value, dict):
        return "{" + _members((f'"{k}":', v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + _members(("", v) for v in value) + "]"
    raise TypeError(f"CJAVal cannot hold {type(value).__name__}")


def _members(members: Iterable[tuple[str, Any]]) -> str:
    """``group[i].Serialize(js, bkey, i > 0)``: an undefined member writes nothing, the next one its comma."""
    return "".join(("," if i else "") + key + serialize(v) for i, (key, v) in enumerate(members) if v is not UNDEF)
