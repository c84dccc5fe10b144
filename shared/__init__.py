"""ordermesh: a distributed message-bus order router for trading.

This package (the project's ``shared/`` folder) is the library every process imports: the wire contract, the
subjects, the bus, configuration, domain math, and the strategy SDK::

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
    from ordermesh.sdk import OrderMeshClient, OrderMeshError
    from ordermesh.wire import Fixed, Intent, Kelly, OrderType, RiskPct, Side, TimeInForce


def __getattr__(name: str) -> Any:
    # Lazy, so `import ordermesh.wire` does not pull in the NATS client.
    if name in ("OrderMeshClient", "OrderMeshError"):
        from ordermesh import sdk

        return getattr(sdk, name)
    if name in __all__:
        from ordermesh import wire

        return getattr(wire, name)
    raise AttributeError(f"module 'ordermesh' has no attribute {name!r}")
