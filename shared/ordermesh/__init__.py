"""ordermesh: a distributed message-bus order router for trading.

This package (``shared/ordermesh/``) is the library every process imports, one subpackage per concern:
``contract`` (wire messages, codecs, subjects, ids), ``platform`` (bus, service runtime, configuration, logging,
metrics, embedded NATS), ``sizing``, ``routing``, ``books`` and ``brokers`` (the adapter interface and one
subpackage per broker); and the strategy SDK (``ordermesh.sdk``), importable from the top::

    from ordermesh import OrderMeshClient, Side, Fixed, Kelly, RiskPct
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Fixed",
    "Intent",
    "Kelly",
    "OrderMeshClient",
    "OrderMeshError",
    "OrderType",
    "RiskPct",
    "Side",
    "TimeInForce",
]

if TYPE_CHECKING:
    from ordermesh.contract.wire import Fixed, Intent, Kelly, OrderType, RiskPct, Side, TimeInForce
    from ordermesh.sdk import OrderMeshClient, OrderMeshError


def __getattr__(name: str) -> Any:
    # Lazy, so `import ordermesh.contract.wire` does not pull in the NATS client.
    if name in ("OrderMeshClient", "OrderMeshError"):
        from ordermesh import sdk

        return getattr(sdk, name)
    if name in __all__:
        from ordermesh.contract import wire

        return getattr(wire, name)
    raise AttributeError(f"module 'ordermesh' has no attribute {name!r}")
