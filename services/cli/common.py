"""What the command modules share: argument types, quiet logging, output formatting, requests to the router."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.log import setup_logging
from ordermesh.platform.runtime import install_uvloop

# A command: the loaded config and the parsed arguments in, the exit status out.
Command = Callable[[OrderMeshConfig, argparse.Namespace], int]


def decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def quiet(config: OrderMeshConfig) -> None:
    """Logging at warning and uvloop, for a one-shot command."""
    setup_logging(msgspec.structs.replace(config.log, level="warning"))
    install_uvloop()


def fmt(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def request_ctl(config: OrderMeshConfig, name: str, msg: Any) -> int:
    """Send ``msg`` to the router's control subject ``name`` and print its reply."""
    import nats.errors

    from ordermesh.contract.codec import decode_any
    from ordermesh.contract.wire import ControlReply
    from ordermesh.platform.bus import Bus

    quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:ctl", identity=OPERATOR)
        await bus.connect()
        try:
            data = await bus.request(bus.subjects.ctl(name), msg, timeout=10.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            print("no router answered (is `ordermesh router` running?)", file=sys.stderr)
            return 1
        finally:
            await bus.close()
        reply = decode_any(data)
        assert isinstance(reply, ControlReply)
        print(reply.detail)
        return 0 if reply.ok else 1

    return asyncio.run(go())
