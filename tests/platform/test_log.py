"""Logging: secrets are masked wherever they come from; ids are bound per block."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from ordermesh.platform.config import LogSettings
from ordermesh.platform.log import MASK, _mask_secrets, bind_ids, get_logger, setup_logging


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ processor


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apikey",
        "API_KEY",
        "binance_api_key",
        "secret",
        "client_secret",
        "SECRET_KEY",
        "password",
        "passwd",
        "nats_password",
        "token",
        "access_token",
        "private_key",
        "signature",
        "credentials",
    ],
)
def test_secret_keys_are_masked(key: str) -> None:
    event = {"event": "connecting", key: "abc123"}
    out = _mask_secrets(None, "info", event)
    assert out[key] == MASK == "***"
    assert out["event"] == "connecting"


@pytest.mark.parametrize(
    "key",
    ["event", "symbol", "intent_id", "client_order_id", "broker_order_id", "quantity", "price", "account", "user"],
)
def test_other_keys_are_left_alone(key: str) -> None:
    event = {key: "abc123"}
    assert _mask_secrets(None, "info", event) == {key: "abc123"}


def test_masking_keeps_none_and_masks_non_strings() -> None:
    event = {"token": None, "password": 12345, "symbol": "EURUSD"}
    out = _mask_secrets(None, "info", event)
    assert out == {"token": None, "password": "***", "symbol": "EURUSD"}


def test_masking_reaches_nested_mappings_and_lists() -> None:
    event = {"secret": "x", "broker": {"api_key": "k", "id": "paper"}, "items": [{"password": "p", "n": 1}]}
    assert _mask_secrets(None, "info", event) == {
        "secret": "***",
        "broker": {"api_key": "***", "id": "paper"},
        "items": [{"password": "***", "n": 1}],
    }


# ----------------------------------------------------------------------------------- end to end


def test_json_log_never_prints_a_secret(clean_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogSettings(format="json"))
    get_logger().info("placing order", api_key="abc123", symbol="EURUSD", quantity="0.10")
    err = capsys.readouterr().err
    assert "abc123" not in err
    (line,) = _lines(err)
    assert line["event"] == "placing order"
    assert line["api_key"] == "***"
    assert line["symbol"] == "EURUSD"
    assert line["quantity"] == "0.10"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_secrets_bound_at_setup_and_in_blocks_are_masked(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(LogSettings(format="json"), service="gateway", token="tok-xyz")
    log = get_logger(password="hunter2")
    with bind_ids(intent_id="i-1", client_secret="sh-1"):
        log.warning("hello")
    err = capsys.readouterr().err
    for secret in ("tok-xyz", "hunter2", "sh-1"):
        assert secret not in err
    (line,) = _lines(err)
    assert line["service"] == "gateway"
    assert line["token"] == "***"
    assert line["password"] == "***"
    assert line["client_secret"] == "***"
    assert line["intent_id"] == "i-1"


def test_console_format_masks_too(clean_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogSettings(format="console"))
    get_logger().info("connect", api_key="abc123")
    err = capsys.readouterr().err
    assert "connect" in err
    assert "abc123" not in err
    assert "***" in err


def test_bind_ids_binds_inside_the_block_only_and_drops_none(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(LogSettings(format="json"))
    log = get_logger()
    with bind_ids(intent_id="i-7", client_order_id="c-7", broker_order_id=None):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(capsys.readouterr().err)
    assert inside["intent_id"] == "i-7"
    assert inside["client_order_id"] == "c-7"
    assert "broker_order_id" not in inside
    assert "intent_id" not in outside
    assert "client_order_id" not in outside


def test_level_filters(clean_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogSettings(level="warning", format="json"))
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in _lines(capsys.readouterr().err)] == ["w", "e"]


def test_setup_clears_previously_bound_context(clean_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogSettings(format="json"), instance="a")
    setup_logging(LogSettings(format="json"), service="b")
    get_logger().info("x")
    (line,) = _lines(capsys.readouterr().err)
    assert line["service"] == "b"
    assert "instance" not in line
