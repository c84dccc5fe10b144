"""The ``ordermesh`` command: the parser and the dispatch; the commands live in one module per group."""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from ordermesh.platform.bus import BusError
from ordermesh.platform.config import ConfigError, load_config
from services.cli import auth, books, brokers, control, processes, tca, tools, trading
from services.cli.common import Command

# In this order in `ordermesh --help`.
GROUPS = (processes, trading, books, tca, control, brokers, auth, tools)

COMMANDS: dict[str, Command] = {name: cmd for group in GROUPS for name, cmd in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ordermesh", description="ordermesh: a message-bus order router for trading")
    p.add_argument("--config", "-c", help="YAML config file (default: $ORDERMESH_CONFIG, else built-in defaults)")
    p.add_argument("--nats", help="NATS URL, overriding the config (e.g. nats://127.0.0.1:4222)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.nats:
            config = msgspec.structs.replace(config, nats=msgspec.structs.replace(config.nats, url=args.nats))
    except ConfigError as exc:
        print(f"ordermesh: config error: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](config, args)
    except BusError as exc:  # NATS unreachable until the connect deadline: one line, not a traceback
        print(f"ordermesh: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # `ordermesh orders --all | head`: the reader has what it wanted
        # Python flushes stdout again at exit and would complain a second time: point it at /dev/null
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
