"""``ordermesh auth``: the bus's identities and permissions (generate the files, rotate a credential, list)."""

from __future__ import annotations

import argparse
import sys

from ordermesh.platform.config import OrderMeshConfig
from services.cli.common import Command


def register(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser(
        "auth",
        help="the bus's identities: `auth generate` writes nats-auth.conf and one nkey seed per identity",
    )
    au.add_argument("action", choices=["generate", "list"], help="generate (or update) the files; list identities")
    au.add_argument("--rotate", action="append", default=[], metavar="IDENTITY", help="replace this identity's seed")
    au.add_argument("--dir", help="where to write (default: nats.auth.dir)")


def cmd_auth(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.subjects import Subjects
    from ordermesh.platform.auth import AuthError, generate, identities

    try:
        idents = identities(config)
        if args.action == "list":
            for ident in idents:
                scope = f" {', '.join(ident.scope)}" if ident.scope else ""
                print(f"{ident.name:<28} {ident.role}{scope}")
            return 0
        directory = args.dir or config.nats.auth.dir
        done = generate(idents, Subjects(config.nats.prefix), directory, rotate=args.rotate)
    except AuthError as exc:
        print(f"ordermesh: {exc}", file=sys.stderr)
        return 2
    kept = len(done.seeds) - len(done.created) - len(done.rotated)
    print(f"{done.server_config}: {len(done.seeds)} identities ({len(done.created)} new, {kept} kept)")
    for name in done.rotated:
        print(f"rotated {name}: reload the server (nats-server --signal reload) and restart that process")
    return 0


COMMANDS: dict[str, Command] = {"auth": cmd_auth}
