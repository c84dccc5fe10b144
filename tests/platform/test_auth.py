"""The identities, their permissions and the files ``ordermesh auth generate`` writes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ordermesh.contract.subjects import Subjects
from ordermesh.platform.auth import (
    AuthError,
    Identity,
    generate,
    identities,
    permissions,
    public_key,
    read_seed,
    safe_name,
    seed_path,
)
from ordermesh.platform.config import AuthSettings, NatsSettings, OrderMeshConfig

S = Subjects()


def allowed(patterns: set[str], subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    want = subject.split(".")
    for pattern in patterns:
        toks = pattern.split(".")
        for i, tok in enumerate(toks):
            if tok == ">":
                if len(want) > i:
                    return True
                break
            if i >= len(want) or (tok != "*" and tok != want[i]):
                break
        else:
            if len(toks) == len(want):
                return True
    return False


def can_publish(ident: Identity, subject: str) -> bool:
    perm = permissions(ident, S)
    return allowed(perm.publish, subject) and not allowed(perm.publish_deny, subject)


def test_only_the_owning_role_may_publish_each_kind_of_subject() -> None:
    strategy = Identity("strategy-a", "strategy", ("a",))
    gateway = Identity("gateway-paper", "gateway", ("paper",))
    router, keeper = Identity("router", "router"), Identity("keeper", "keeper")
    operator, observer = Identity("operator", "operator"), Identity("observer", "observer")

    assert can_publish(strategy, S.intent("a")) and not can_publish(strategy, S.intent("b"))
    for forbidden in (S.cmd("paper"), S.exec("paper", "a"), S.ctl("trading"), S.order("paper-1"), "$KV.om_orders.x"):
        assert not can_publish(strategy, forbidden), forbidden
    assert can_publish(strategy, S.ctl("cancel", "a")) and not can_publish(strategy, S.ctl("cancel", "b"))

    assert can_publish(router, S.cmd("paper")) and not can_publish(gateway, S.cmd("paper"))
    assert can_publish(gateway, S.exec("paper", "a")) and not can_publish(gateway, S.exec("binance", "a"))
    assert not any(can_publish(i, S.exec("paper", "a")) for i in (router, keeper, operator, observer, strategy))
    assert can_publish(operator, S.ctl("trading")) and not can_publish(observer, S.ctl("trading"))
    # a gateway writes only its own keys
    assert can_publish(gateway, "$KV.om_gateway.paper.coid-1")
    assert not can_publish(gateway, "$KV.om_gateway.binance.coid-1")


def test_nobody_but_admin_deletes_or_purges_and_strategies_do_not_administer_jetstream() -> None:
    roles = [i for i in identities(OrderMeshConfig()) if i.role != "admin"]
    for ident in roles:
        for action in ("STREAM.DELETE", "STREAM.PURGE", "CONSUMER.DELETE"):
            assert not can_publish(ident, f"$JS.API.{action}.OM_EXEC"), (ident.name, action)
    strategy = Identity("strategy-a", "strategy", ("a",))
    assert not can_publish(strategy, "$JS.API.STREAM.CREATE.OM_EXEC")
    assert not can_publish(strategy, "$JS.API.STREAM.UPDATE.OM_EXEC")
    # its feeds: a consumer on its own reports only, never one named like a service's durable
    assert can_publish(strategy, "$JS.API.CONSUMER.CREATE.OM_EXEC.feed_1.om.exec.*.a")
    assert not can_publish(strategy, "$JS.API.CONSUMER.CREATE.OM_EXEC.feed_1.om.exec.*.b")
    assert not can_publish(strategy, "$JS.API.CONSUMER.CREATE.OM_EXEC.feed_1.om.exec.>")
    assert not can_publish(strategy, "$JS.API.CONSUMER.CREATE.OM_EXEC.router-exec.om.exec.*.a")
    assert not can_publish(strategy, "$JS.API.CONSUMER.MSG.NEXT.OM_EXEC.router-exec")


def test_each_identity_subscribes_only_to_its_own_inbox_and_what_it_reads() -> None:
    strategy = permissions(Identity("strategy-a", "strategy", ("a",)), S)
    assert strategy.subscribe == {"_INBOX.strategy-a.>", "om.md.>"}  # its inbox and the market, no reports
    assert not strategy.allow_responses
    assert permissions(Identity("keeper", "keeper"), S).allow_responses


def test_generate_writes_private_seeds_keeps_them_and_rotates_on_request(tmp_path: Path) -> None:
    config = OrderMeshConfig(nats=NatsSettings(auth=AuthSettings(strategies=["x/y z"])))
    idents = identities(config)
    assert "strategy-x/y z" in [i.name for i in idents]
    first = generate(idents, S, tmp_path / "auth")
    assert set(first.created) == {i.name for i in idents}
    path = seed_path(tmp_path / "auth", "strategy-x/y z")
    assert path.name == "strategy-x=2Fy=20z.nk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.server_config.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    old = read_seed(seed_path(tmp_path / "auth", "router"))
    assert public_key(old) in first.server_config.read_text()

    again = generate(idents, S, tmp_path / "auth")
    assert again.created == () and again.rotated == ()
    assert read_seed(seed_path(tmp_path / "auth", "router")) == old

    rotated = generate(idents, S, tmp_path / "auth", rotate=["router"])
    assert rotated.rotated == ("router",)
    new = read_seed(seed_path(tmp_path / "auth", "router"))
    assert new != old
    text = rotated.server_config.read_text()
    assert public_key(new) in text and public_key(old) not in text
    with pytest.raises(AuthError, match="no identity named nobody"):
        generate(idents, S, tmp_path / "auth", rotate=["nobody"])


def test_identity_names_are_unique_and_safe() -> None:
    config = OrderMeshConfig(nats=NatsSettings(auth=AuthSettings(operators=["router"])))
    with pytest.raises(AuthError, match="used twice: router"):
        identities(config)
    assert safe_name("a.b*c>") == "a=2Eb=2Ac=3E"
