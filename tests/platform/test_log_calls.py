"""Log calls never pass ``event=``: structlog takes the message as ``event``, so a second one raises TypeError
inside the handler (the router's invalid-transition branch did: the report was retried 10 times and counted as a
handler failure instead of being logged once)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "msg"}


def test_a_second_event_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        structlog.get_logger("t").warning("message", event="another")


def test_no_log_call_passes_event() -> None:
    found = []
    for root in ("shared", "services", "tools"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and node.args
                    and any(k.arg == "event" for k in node.keywords)
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []
