"""Configuration loading: defaults, YAML, ${VAR} substitution, ORDERMESH__ overrides and one-line errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ordermesh.brokers.paper.settings import PaperSettings
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.platform.config import (
    ConfigError,
    FeedSymbol,
    OrderMeshConfig,
    apply_env_overrides,
    load_config,
    substitute,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ordermesh.yaml"
    path.write_text(text)
    return path


def _error(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


# -------------------------------------------------------------------------------------- defaults


def test_defaults_load_without_a_file() -> None:
    cfg = load_config(None, env={})
    assert cfg == OrderMeshConfig()
    assert cfg.nats.url == "nats://127.0.0.1:4222"
    assert cfg.nats.prefix == "om"
    assert cfg.nats.replicas == 1
    assert cfg.nats.duplicate_window_s == 600.0
    assert cfg.nats.embedded is True
    assert cfg.nats.user is None and cfg.nats.password is None and cfg.nats.token is None
    assert cfg.log.level == "info"
    assert cfg.log.format == "auto"
    assert cfg.http.sizer == 9301
    assert cfg.http.gateway_base == 9310
    assert list(cfg.accounts) == ["paper-1"]
    assert cfg.accounts["paper-1"].deposit == Decimal("100000")
    assert cfg.accounts["paper-1"].currency == "USD"
    assert cfg.router.default_broker == "paper"
    assert cfg.router.command_ttl_s == 30.0
    assert cfg.brokers == {"paper": {"type": "paper"}}
    paper = BrokerRegistry(cfg.brokers, env={}).settings("paper")
    assert isinstance(paper, PaperSettings)
    assert paper.seed == 7
    assert sorted(paper.symbols) == ["BTCUSD", "EURUSD", "GBPUSD"]
    assert paper.symbols["EURUSD"].spread == Decimal("0.00010")
    assert cfg.keeper.snapshot_every == 500
    assert str(cfg.demo.fx_qty) == "0.10"
    assert str(cfg.demo.crypto_qty) == "0.010"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, ""), env={}) == OrderMeshConfig()
    assert load_config(_write(tmp_path, "# only a comment\n"), env={}) == OrderMeshConfig()


# ------------------------------------------------------------------------------------------ YAML


def test_yaml_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
nats:
  url: nats://10.0.0.5:4222
  replicas: 3
  duplicate_window_s: 120
  embedded: false
log:
  level: debug
  format: json
accounts:
  live-1:
    currency: EUR
    deposit: "250000.50"
brokers:
  sim:
    type: paper
    seed: 11
    quote_interval_ms: 50
    symbols:
      XAUUSD:
        initial_price: "2300.10"
        spread: "0.30"
        tick_size: "0.01"
keeper:
  snapshot_every: 50
demo:
  strategies: [a, b, c]
""",
    )
    cfg = load_config(path, env={})
    assert cfg.nats.url == "nats://10.0.0.5:4222"
    assert cfg.nats.replicas == 3
    assert cfg.nats.duplicate_window_s == 120.0
    assert cfg.nats.embedded is False
    assert cfg.nats.prefix == "om"  # untouched fields keep their defaults
    assert cfg.log.level == "debug"
    assert cfg.log.format == "json"
    assert list(cfg.accounts) == ["live-1"]  # a mapping given in the file replaces the default one
    assert cfg.accounts["live-1"].currency == "EUR"
    assert cfg.accounts["live-1"].deposit == Decimal("250000.50")
    assert str(cfg.accounts["live-1"].deposit) == "250000.50"
    assert list(cfg.brokers) == ["sim"]
    sim = BrokerRegistry(cfg.brokers, env={}).settings("sim")
    assert isinstance(sim, PaperSettings)
    assert sim.seed == 11
    assert sim.quote_interval_ms == 50
    assert sim.symbols == {
        "XAUUSD": FeedSymbol(initial_price=Decimal("2300.10"), spread=Decimal("0.30"), tick_size=Decimal("0.01"))
    }
    assert sim.symbols["XAUUSD"].volatility_ticks == 3
    assert cfg.keeper.snapshot_every == 50
    assert cfg.keeper.snapshot_interval_s == 1.0
    assert cfg.demo.strategies == ["a", "b", "c"]


def test_config_path_from_ordermesh_config_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "nats:\n  prefix: staging\n")
    cfg = load_config(env={"ORDERMESH_CONFIG": str(path)})
    assert cfg.nats.prefix == "staging"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = _error(missing)
    assert message.startswith(f"cannot read config file {missing}")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "nats:\n  url: [unclosed\n")
    message = _error(path)
    assert message.startswith(f"{path}: not valid YAML: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "- a\n- b\n"))
    assert "the top level must be a mapping" in message


# ---------------------------------------------------------------------------------- substitution


def test_var_substitution(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
nats:
  url: nats://${NATS_HOST}:${NATS_PORT}
  password: ${NATS_PASSWORD}
  replicas: ${REPLICAS}
""",
    )
    cfg = load_config(
        path, env={"NATS_HOST": "10.1.2.3", "NATS_PORT": "4333", "NATS_PASSWORD": "s3cr3t", "REPLICAS": "3"}
    )
    assert cfg.nats.url == "nats://10.1.2.3:4333"
    assert cfg.nats.password == "s3cr3t"
    assert cfg.nats.replicas == 3  # the substituted text is converted to the field's type


def test_var_with_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
nats:
  url: nats://${NATS_HOST:-127.0.0.9}:4222
  prefix: ${PREFIX:-om}
  user: "${NATS_USER:-}"
keeper:
  snapshot_every: ${SNAP:-25}
""",
    )
    cfg = load_config(path, env={})
    assert cfg.nats.url == "nats://127.0.0.9:4222"
    assert cfg.nats.prefix == "om"
    assert cfg.nats.user == ""
    assert cfg.keeper.snapshot_every == 25
    # a set variable wins over the default
    cfg = load_config(path, env={"NATS_HOST": "nats.internal", "SNAP": "9"})
    assert cfg.nats.url == "nats://nats.internal:4222"
    assert cfg.keeper.snapshot_every == 9


def test_var_set_to_empty_wins_over_default() -> None:
    assert substitute("${X:-d}", {"X": ""}) == ""


def test_unset_var_without_default_names_variable_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "nats:\n  url: nats://${NATS_HOST}:4222\n")
    message = _error(path)
    assert "NATS_HOST" in message
    assert "$.nats.url" in message
    assert message == "environment variable NATS_HOST is not set (used at $.nats.url)"


def test_unset_var_inside_a_list_names_the_index(tmp_path: Path) -> None:
    path = _write(tmp_path, "demo:\n  strategies: [a, '${SECOND}']\n")
    message = _error(path)
    assert "SECOND" in message
    assert "$.demo.strategies[1]" in message


def test_substitute_leaves_non_strings_and_plain_text() -> None:
    tree = {"a": 1, "b": [True, None, 2.5], "c": "no vars here", "d": "$NOT_BRACED"}
    assert substitute(tree, {}) == tree


# ----------------------------------------------------------------------------- env overrides


def test_env_override_url() -> None:
    cfg = load_config(None, env={"ORDERMESH__NATS__URL": "nats://10.0.0.5:4222"})
    assert cfg.nats.url == "nats://10.0.0.5:4222"


def test_env_override_nested_is_type_converted() -> None:
    cfg = load_config(None, env={"ORDERMESH__KEEPER__SNAPSHOT_EVERY": "5"})
    assert cfg.keeper.snapshot_every == 5
    assert isinstance(cfg.keeper.snapshot_every, int)
    assert cfg.keeper.snapshot_interval_s == 1.0


def test_env_override_bool_float_and_decimal() -> None:
    cfg = load_config(
        None,
        env={
            "ORDERMESH__NATS__EMBEDDED": "false",
            "ORDERMESH__NATS__DUPLICATE_WINDOW_S": "2.5",
            "ORDERMESH__SIZER__FALLBACK_BALANCE": "5000.10",
        },
    )
    assert cfg.nats.embedded is False
    assert cfg.nats.duplicate_window_s == 2.5
    assert cfg.sizer.fallback_balance == Decimal("5000.10")


def test_env_override_wins_over_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "nats:\n  url: nats://from-file:4222\n  replicas: 3\nkeeper:\n  snapshot_every: 50\n")
    cfg = load_config(
        path, env={"ORDERMESH__NATS__URL": "nats://from-env:4222", "ORDERMESH__KEEPER__SNAPSHOT_EVERY": "5"}
    )
    assert cfg.nats.url == "nats://from-env:4222"
    assert cfg.nats.replicas == 3  # siblings in the file are kept
    assert cfg.keeper.snapshot_every == 5


def test_env_override_into_a_mapping_entry() -> None:
    env = {"ORDERMESH__BROKERS__PAPER__TYPE": "paper", "ORDERMESH__BROKERS__PAPER__SEED": "11"}
    cfg = load_config(None, env=env)
    assert list(cfg.brokers) == ["paper"]
    paper = BrokerRegistry(cfg.brokers, env={}).settings("paper")
    assert isinstance(paper, PaperSettings)
    assert paper.seed == 11
    assert paper.symbols == PaperSettings().symbols


def test_env_override_is_applied_after_substitution(tmp_path: Path) -> None:
    # the override value is taken literally, not substituted
    path = _write(tmp_path, "nats:\n  url: ${URL:-nats://a:1}\n")
    cfg = load_config(path, env={"ORDERMESH__NATS__URL": "nats://b:2"})
    assert cfg.nats.url == "nats://b:2"


def test_unrelated_variables_are_ignored() -> None:
    cfg = load_config(None, env={"ORDERMESH_NATS__URL": "x", "NATS_URL": "y", "ORDERMESH__": "z", "HOME": "/root"})
    assert cfg == OrderMeshConfig()


def test_apply_env_overrides_builds_the_path() -> None:
    data = {"nats": {"url": "a"}}
    out = apply_env_overrides(data, {"ORDERMESH__NATS__REPLICAS": "3", "ORDERMESH__LOG__LEVEL": "debug"})
    # scalars stay strings here; validation converts them to the field's type
    assert out == {"nats": {"url": "a", "replicas": "3"}, "log": {"level": "debug"}}
    assert load_config(None, env={"ORDERMESH__NATS__REPLICAS": "3"}).nats.replicas == 3


def test_numeric_secret_from_the_environment_stays_a_string() -> None:
    assert load_config(None, env={"ORDERMESH__NATS__PASSWORD": "12345"}).nats.password == "12345"


def test_list_override_in_yaml_flow_syntax() -> None:
    cfg = load_config(None, env={"ORDERMESH__DEMO__STRATEGIES": "[alpha, beta]"})
    assert cfg.demo.strategies == ["alpha", "beta"]
    try:
        load_config(None, env={"ORDERMESH__DEMO__STRATEGIES": "[alpha, "})
    except ConfigError as exc:
        assert str(exc).startswith("ORDERMESH__DEMO__STRATEGIES: not a valid YAML list or mapping")
        assert "\n" not in str(exc)
    else:
        raise AssertionError("a broken list override must be a ConfigError")


def test_env_override_that_is_not_valid_yaml_never_escapes_as_a_yaml_error() -> None:
    # "@secret" is not a YAML scalar. Acceptable: take it as the plain string, or a one-line ConfigError naming the
    # variable. Not acceptable: a multi-line yaml.ScannerError out of load_config.
    env = {"ORDERMESH__NATS__PASSWORD": "@secret"}
    try:
        cfg = load_config(None, env=env)
    except ConfigError as exc:
        assert "ORDERMESH__NATS__PASSWORD" in str(exc)
        assert "\n" not in str(exc)
    else:
        assert cfg.nats.password == "@secret"


# ---------------------------------------------------------------------------------------- errors


def test_unknown_key_in_a_section(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "nats:\n  urll: nats://x:4222\n"))
    assert "urll" in message
    assert "$.nats" in message
    assert "unknown field" in message
    assert str(tmp_path / "ordermesh.yaml") in message


def test_unknown_key_deeper(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "brokers:\n  paper:\n    type: paper\n    symbols:\n      EURUSD:\n        initial_price: '1'\n"
        "        spread: '0.1'\n        tick_size: '0.1'\n        volatility: 3\n",
    )
    # a broker entry is checked by the registry, on its own: the rest of the config loads
    (message,) = BrokerRegistry(load_config(path, env={}).brokers, env={}).validate()
    assert message.startswith("error: brokers.paper: ")
    assert "unknown field `volatility`" in message
    # msgspec does not name mapping keys, only where they are
    assert "`$.symbols[...]`" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "natz:\n  url: x\n"))
    assert "`natz`" in message


def test_unknown_key_from_env_override() -> None:
    message = _error(env={"ORDERMESH__NATS__BOGUS": "1"})
    assert "bogus" in message
    assert "$.nats" in message
    assert message.startswith("config: ")


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "nats:\n  replicas: three\n")
    message = _error(path)
    assert "`$.nats.replicas`" in message
    assert "Expected `int`" in message
    assert message.startswith(f"{path}: ")


def test_wrong_type_from_env_override() -> None:
    message = _error(env={"ORDERMESH__NATS__REPLICAS": "three"})
    assert message == "config: Expected `int`, got `str` - at `$.nats.replicas`"


def test_invalid_choice(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "log:\n  level: loud\n"))
    assert "loud" in message
    assert "`$.log.level`" in message


def test_missing_required_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "brokers:\n  paper:\n    type: paper\n    symbols:\n      EURUSD:\n        spread: '0.1'\n")
    (message,) = BrokerRegistry(load_config(path, env={}).brokers, env={}).validate()
    assert "missing required field `initial_price`" in message
    assert "`$.symbols[...]`" in message


def test_section_of_the_wrong_shape(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "nats: nats://x:4222\n"))
    assert "`$.nats`" in message
