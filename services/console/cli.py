"""``ordermesh console``: run the console, or print its operator login URL, or rotate its operator token."""

from __future__ import annotations

import argparse
import sys

from ordermesh.platform.config import OrderMeshConfig
from services.console.access import TokenError, ensure_token, token_path


def login_url(config: OrderMeshConfig, token: str, port: int | None = None) -> str:
    host = config.http.host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port if port is not None else config.http.console}/#token={token}"


def console(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    path = token_path(config)
    if args.login_url or args.rotate_token:
        try:
            token, written = ensure_token(path, rotate=args.rotate_token)
        except (OSError, TokenError) as exc:
            print(f"ordermesh: {exc}", file=sys.stderr)
            return 2
        if args.rotate_token:
            print(f"new operator token written to {path}; sessions that logged in with the old one are refused "
                  "from their next action", file=sys.stderr)  # fmt: skip
        elif written:
            print(f"operator token created in {path}", file=sys.stderr)
        if args.login_url:
            print(login_url(config, token, args.http_port or None))
        return 0
    from services.console.service import run_console

    return run_console(config, http_port=args.http_port, instance=args.instance)
