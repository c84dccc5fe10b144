"""Subject tokens, KV keys, subject builders and the stream/bucket topology."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

from ordermesh.contract import subjects as sj
from ordermesh.contract.subjects import Subjects, Topology, kv_key, token, untoken

PROPERTY = settings(derandomize=True, database=None, max_examples=300, deadline=None)

#: Unicode whitespace (``\s`` matches all of it), below and above U+00FF: token() must escape it reversibly.
UNICODE_WHITESPACE = ["\x85", "\xa0", "\u2028", "\u3000"]


# ---------------------------------------------------------------------------------------- token


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("BTC/USDT:USDT", "BTC/USDT:USDT"),  # readable symbols stay readable
        ("EURUSD", "EURUSD"),
        ("paper-1", "paper-1"),
        ("a.b", "a%2Eb"),
        ("*", "%2A"),
        (">", "%3E"),
        ("a b", "a%20b"),
        ("\t", "%09"),
        ("\n", "%0A"),
        ("\r", "%0D"),
        ("%", "%25"),
        ("100%", "100%25"),
        ("%2E", "%252E"),
        ("om.*.>", "om%2E%2A%2E%3E"),
    ],
)
def test_token_escapes_nats_metacharacters(raw: str, escaped: str) -> None:
    assert token(raw) == escaped
    assert untoken(escaped) == raw


def test_untoken_of_an_escape_looking_text_that_token_produced() -> None:
    # a literal "%2E" in the input must not come back as "."
    assert untoken(token("x%2Ey")) == "x%2Ey"
    assert untoken(token("%")) == "%"


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        token("")


@pytest.mark.parametrize("ch", UNICODE_WHITESPACE, ids=[f"U+{ord(c):04X}" for c in UNICODE_WHITESPACE])
def test_token_of_unicode_whitespace_is_reversible(ch: str) -> None:
    escaped = token(f"a{ch}b")
    assert not any(c.isspace() for c in escaped)
    assert untoken(escaped) == f"a{ch}b"


@PROPERTY
@given(st.text(min_size=1))
@example("\u3000")
@example("a.b*c>d e%f")
def test_untoken_reverses_token(value: str) -> None:
    assert untoken(token(value)) == value


@PROPERTY
@given(st.text(min_size=1))
@example("\u3000")
def test_token_is_a_single_subject_token(value: str) -> None:
    out = token(value)
    assert out
    assert "." not in out
    assert "*" not in out
    assert ">" not in out
    assert not any(c.isspace() for c in out)


@PROPERTY
@given(st.text(min_size=1), st.text(min_size=1))
@example(" 28", "\u2028")  # "%2028" either way: two strategies would share one subject
def test_token_is_injective(a: str, b: str) -> None:
    if a != b:
        assert token(a) != token(b)


# --------------------------------------------------------------------------------------- kv_key

_KV_SAFE = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("paper-1", "EURUSD"), "paper-1.EURUSD"),
        (("paper-1", "BTC/USDT:USDT"), "paper-1.BTC/USDT=3AUSDT"),
        (("a.b",), "a=2Eb"),
        (("a b", "c*d"), "a=20b.c=2Ad"),
        (("x>y",), "x=3Ey"),
        (("under_score", "A=B"), "under_score.A=3DB"),
    ],
)
def test_kv_key(parts: tuple[str, ...], key: str) -> None:
    assert kv_key(*parts) == key


def test_kv_key_refuses_an_empty_part() -> None:
    with pytest.raises(ValueError, match="empty"):
        kv_key("paper-1", "")
    with pytest.raises(ValueError, match="empty"):
        kv_key("")


@PROPERTY
@given(st.lists(st.text(min_size=1), min_size=1, max_size=4))
def test_kv_key_uses_only_safe_characters_and_one_dot_per_separator(parts: list[str]) -> None:
    key = kv_key(*parts)
    assert _KV_SAFE.match(key)
    assert key.count(".") == len(parts) - 1
    assert len(key.split(".")) == len(parts)
    assert not key.startswith(".")
    assert not key.endswith(".")


# ------------------------------------------------------------------------------------- builders


def test_subject_builders_default_prefix() -> None:
    s = Subjects()
    assert s.prefix == "om"
    assert s.intent("demo-trend") == "om.intent.demo-trend"
    assert s.order("paper-1") == "om.order.paper-1"
    assert s.cmd("paper") == "om.cmd.paper"
    assert s.exec("paper", "demo-trend") == "om.exec.paper.demo-trend"
    assert s.reject("demo-trend") == "om.reject.demo-trend"
    assert s.md("binance", "BTC/USDT:USDT") == "om.md.binance.BTC/USDT:USDT"
    assert s.health("gateway", "gw-1") == "om.health.gateway.gw-1"
    assert s.ctl("halt") == "om.ctl.halt"
    assert s.q("positions") == "om.q.positions"
    assert s.all_intents == "om.intent.>"
    assert s.all_orders == "om.order.>"
    assert s.all_exec == "om.exec.>"
    assert s.all_rejects == "om.reject.>"
    assert s.all_health == "om.health.>"
    assert s.strategy_exec("demo-trend") == "om.exec.*.demo-trend"


def test_subject_builders_escape_every_variable_part() -> None:
    s = Subjects("test")
    assert s.intent("s.1") == "test.intent.s%2E1"
    assert s.order("acc 1") == "test.order.acc%201"
    assert s.cmd("br*") == "test.cmd.br%2A"
    assert s.exec("b.1", "s>1") == "test.exec.b%2E1.s%3E1"
    assert s.reject("s.1") == "test.reject.s%2E1"
    assert s.md("b", "ES.H5") == "test.md.b.ES%2EH5"
    assert s.health("svc", "host.local") == "test.health.svc.host%2Elocal"
    assert s.strategy_exec("s.1") == "test.exec.*.s%2E1"
    # every built subject has exactly the expected number of tokens
    assert len(s.exec("b.1", "s>1").split(".")) == 4
    assert len(s.md("b", "ES.H5").split(".")) == 4


def test_subject_builders_refuse_empty_ids() -> None:
    s = Subjects()
    with pytest.raises(ValueError):
        s.intent("")
    with pytest.raises(ValueError):
        s.exec("paper", "")


@pytest.mark.parametrize("prefix", ["", "om.prod", "om*", "om>", "om x", "om%"])
def test_invalid_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid subject prefix"):
        Subjects(prefix)


# ------------------------------------------------------------------------------------- topology


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, p in enumerate(pat):
        if p == ">":
            return len(sub) > i
        if i >= len(sub) or (p != "*" and p != sub[i]):
            return False
    return len(pat) == len(sub)


def _stream_for(topology: Topology, subject: str) -> list[str]:
    return [cfg.name for cfg in topology.streams() if any(_matches(p, subject) for p in cfg.subjects or [])]


def test_topology_defaults() -> None:
    t = Topology(Subjects())
    streams = {cfg.name: cfg for cfg in t.streams()}
    assert list(streams) == [sj.INTENTS, sj.ORDERS, sj.COMMANDS, sj.EXEC, sj.EQUITY]
    assert streams[sj.EQUITY].subjects == ["om.equity.>"]
    assert streams[sj.EQUITY].retention is RetentionPolicy.LIMITS
    assert [sj.INTENTS, sj.ORDERS, sj.COMMANDS, sj.EXEC] == ["OM_INTENTS", "OM_ORDERS", "OM_COMMANDS", "OM_EXEC"]
    for cfg in streams.values():
        assert cfg.num_replicas == 1
        assert cfg.duplicate_window == 600.0
        assert cfg.storage is StorageType.FILE
        assert cfg.discard is DiscardPolicy.OLD
    assert streams[sj.INTENTS].subjects == ["om.intent.>"]
    assert streams[sj.ORDERS].subjects == ["om.order.>"]
    assert streams[sj.COMMANDS].subjects == ["om.cmd.>"]
    assert streams[sj.EXEC].subjects == ["om.exec.>", "om.reject.>"]
    assert streams[sj.INTENTS].max_age == 7 * 86_400.0
    assert streams[sj.ORDERS].max_age == 7 * 86_400.0
    assert streams[sj.COMMANDS].max_age == 86_400.0
    assert streams[sj.EXEC].max_age == 365 * 86_400.0


def test_commands_stream_is_a_work_queue_and_the_others_keep_history() -> None:
    streams = {cfg.name: cfg for cfg in Topology(Subjects()).streams()}
    assert streams[sj.COMMANDS].retention is RetentionPolicy.WORK_QUEUE
    assert streams[sj.INTENTS].retention is RetentionPolicy.LIMITS
    assert streams[sj.ORDERS].retention is RetentionPolicy.LIMITS
    assert streams[sj.EXEC].retention is RetentionPolicy.LIMITS


def test_replicas_duplicate_window_and_ages_propagate() -> None:
    t = Topology(
        Subjects("prod"),
        replicas=3,
        duplicate_window_s=120.0,
        intents_max_age_s=3600.0,
        exec_max_age_s=7200.0,
    )
    streams = {cfg.name: cfg for cfg in t.streams()}
    for cfg in streams.values():
        assert cfg.num_replicas == 3
        assert cfg.duplicate_window == 120.0
    assert streams[sj.INTENTS].max_age == 3600.0
    assert streams[sj.ORDERS].max_age == 3600.0
    assert streams[sj.EXEC].max_age == 7200.0
    assert streams[sj.COMMANDS].max_age == 86_400.0  # commands never live longer than a day
    assert streams[sj.COMMANDS].subjects == ["prod.cmd.>"]
    assert streams[sj.EXEC].subjects == ["prod.exec.>", "prod.reject.>"]
    buckets = t.buckets()
    assert [b.replicas for b in buckets] == [3] * 10


def test_buckets() -> None:
    buckets = Topology(Subjects()).buckets()
    assert [b.bucket for b in buckets] == [
        "om_accounts",
        "om_positions",
        "om_orders",
        "om_instruments",
        "om_keeper",
        "om_control",
        "om_gateway",
        "om_paper",
        "om_mt5",
        "om_leases",
    ]
    assert [b.bucket for b in buckets] == [
        sj.KV_ACCOUNTS,
        sj.KV_POSITIONS,
        sj.KV_ORDERS,
        sj.KV_INSTRUMENTS,
        sj.KV_KEEPER,
        sj.KV_CONTROL,
        sj.KV_GATEWAY,
        sj.KV_PAPER,
        sj.KV_MT5,
        sj.KV_LEASES,
    ]
    # leases expire by the bucket's max age: the configured lease ttl
    assert [b.ttl for b in buckets if b.bucket == sj.KV_LEASES] == [6.0]
    assert Topology(Subjects(), lease_ttl_s=2.5).buckets()[-1].ttl == 2.5
    for b in buckets:
        assert b.history == 1
        assert b.replicas == 1
        assert b.storage is StorageType.FILE


def test_every_durable_subject_lands_in_exactly_one_stream() -> None:
    s = Subjects()
    t = Topology(s)
    assert _stream_for(t, s.intent("s.1")) == [sj.INTENTS]
    assert _stream_for(t, s.order("paper-1")) == [sj.ORDERS]
    assert _stream_for(t, s.cmd("paper")) == [sj.COMMANDS]
    assert _stream_for(t, s.exec("paper", "s1")) == [sj.EXEC]
    assert _stream_for(t, s.reject("s1")) == [sj.EXEC]
    assert _stream_for(t, s.equity("paper-1")) == [sj.EQUITY]
    assert _stream_for(t, s.recon("paper")) == []
    # core-NATS traffic is not captured by any stream
    assert _stream_for(t, s.md("paper", "EURUSD")) == []
    assert _stream_for(t, s.health("gateway", "gw-1")) == []
    assert _stream_for(t, s.ctl("halt")) == []
    assert _stream_for(t, s.q("positions")) == []


def test_strategy_exec_wildcard_matches_only_that_strategy() -> None:
    s = Subjects()
    assert _matches(s.strategy_exec("s.1"), s.exec("paper", "s.1"))
    assert _matches(s.strategy_exec("s.1"), s.exec("binance", "s.1"))
    assert not _matches(s.strategy_exec("s.1"), s.exec("paper", "s"))
    assert not _matches(s.strategy_exec("s"), s.exec("paper", "s.1"))


def test_kv_key_never_collides_on_the_escape_marker() -> None:
    assert kv_key("a.b") != kv_key("a=2Eb")
