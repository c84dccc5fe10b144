"""Identifiers. Client order ids are derived from the intent, so a retried intent can never make a second order."""

from __future__ import annotations

import hashlib
import uuid

#: Binance allows ``[A-Za-z0-9._:/-]{1,36}``; MT5 keeps 31 characters of an order comment. Ours fit both.
CLIENT_ORDER_ID_LEN = 31


def new_intent_id() -> str:
    """A fresh intent id (UUID4, 32 hex characters)."""
    return uuid.uuid4().hex


def client_order_id(account: str, intent_id: str) -> str:
    """Deterministic client order id: ``om-`` + 28 hex characters of BLAKE2b(account, intent_id)."""
    digest = hashlib.blake2b(f"{account}\x1f{intent_id}".encode(), digest_size=14).hexdigest()
    return f"om-{digest}"


def place_command_id(client_order_id: str) -> str:
    return f"place:{client_order_id}"


def fill_event_id(broker_id: str, fill_id: str) -> str:
    return f"fill:{broker_id}:{fill_id}"


def order_event_id(client_order_id: str, kind: str, n: int | str = "") -> str:
    return f"{kind}:{client_order_id}" + (f":{n}" if n != "" else "")
