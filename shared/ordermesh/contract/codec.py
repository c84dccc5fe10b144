"""The codec: bytes on the bus <-> the messages of :mod:`ordermesh.contract.wire`.

One :class:`Codec` per subject family decodes into that family's tagged union and checks the schema version;
a failure becomes a :class:`BadMessage` whose ``reason`` is a metric label.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from ordermesh.contract.wire import (
    MAX_NAME_LENGTH,
    SCHEMA_VERSION,
    AnyMessage,
    BrokerPositionsQuery,
    Command,
    Control,
    EquityPoint,
    ExecEvent,
    Heartbeat,
    Intent,
    OrderRequest,
    Query,
    Quote,
    ReconcileQuery,
    Report,
)


class BadMessage(Exception):
    """A message that cannot be used. ``reason`` is a metric label: undecodable (not msgpack / not a message),
    schema_version (another major version), wrong_type (a valid message of a type not expected on the subject),
    invalid (a message of the right type with bad fields)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Peek(msgspec.Struct):
    v: int = 0
    type: str = ""


_encoder = msgspec.msgpack.Encoder()
_any_decoder = msgspec.msgpack.Decoder(AnyMessage)
_peek_decoder = msgspec.msgpack.Decoder(_Peek)


def encode(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


T = TypeVar("T")


class Codec(Generic[T]):
    """Decoder for one subject family. The fast path is a single typed decode plus a version check; the
    reason for a failure is worked out only on the slow path."""

    def __init__(self, typ: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(typ)

    def decode(self, data: bytes) -> T:
        try:
            msg = self._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _classify(data, exc) from None
        if msg.v != SCHEMA_VERSION:
            raise BadMessage("schema_version", f"v={msg.v}, this reader speaks v={SCHEMA_VERSION}")
        return msg


def _classify(data: bytes, exc: Exception) -> BadMessage:
    try:
        peek = _peek_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return BadMessage("undecodable", str(exc))
    if peek.v and peek.v != SCHEMA_VERSION:
        return BadMessage("schema_version", f"v={peek.v}, this reader speaks v={SCHEMA_VERSION}")
    try:
        _any_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return BadMessage("invalid", str(exc))
    return BadMessage("wrong_type", f"type={peek.type!r} is not expected here")


def decode_any(data: bytes) -> Any:
    """Decode any ordermesh message (for tools such as ``ordermesh tail``)."""
    try:
        msg = _any_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _classify(data, exc) from None
    if msg.v != SCHEMA_VERSION:
        raise BadMessage("schema_version", f"v={msg.v}, this reader speaks v={SCHEMA_VERSION}")
    return msg


def loose_fields(data: bytes) -> dict[str, Any]:
    """The top-level fields of a message that did not decode, read without its schema: enough to answer whoever it
    names with a refusal. Empty when the bytes are not a msgpack map."""
    try:
        found = msgspec.msgpack.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def texts(fields: Any, *names: str) -> tuple[str, ...] | None:
    """The values of ``names`` in ``fields`` when each is a non-empty string of a valid length for an id, else None."""
    if not isinstance(fields, dict):
        return None
    out = tuple(fields.get(n) for n in names)
    ok = all(isinstance(v, str) and 0 < len(v) <= MAX_NAME_LENGTH for v in out)
    return out if ok else None  # type: ignore[return-value]


def text(fields: Any, name: str) -> str:
    """``fields[name]`` if it is a string (cut to the length of an id), else ""."""
    value = fields.get(name) if isinstance(fields, dict) else None
    return value[:MAX_NAME_LENGTH] if isinstance(value, str) else ""


INTENT_CODEC: Codec[Intent] = Codec(Intent)
ORDER_CODEC: Codec[OrderRequest] = Codec(OrderRequest)
COMMAND_CODEC: Codec[Command] = Codec(Command)
EXEC_CODEC: Codec[ExecEvent] = Codec(ExecEvent)
REPORT_CODEC: Codec[Report] = Codec(Report)
QUOTE_CODEC: Codec[Quote] = Codec(Quote)
HEARTBEAT_CODEC: Codec[Heartbeat] = Codec(Heartbeat)
CONTROL_CODEC: Codec[Control] = Codec(Control)
QUERY_CODEC: Codec[Query] = Codec(Query)
RECONCILE_CODEC: Codec[ReconcileQuery] = Codec(ReconcileQuery)
BROKER_POSITIONS_CODEC: Codec[BrokerPositionsQuery] = Codec(BrokerPositionsQuery)
EQUITY_CODEC: Codec[EquityPoint] = Codec(EquityPoint)
