"""Account partitions and which of them a router should hold (pure; the leases are ``ordermesh.platform.lease``).

Every account belongs to one partition (a stable hash of its name, the same in every process and version); each
partition is routed by the one router holding its lease. Routers share the partitions fairly: each aims at
``ceil(partitions / routers)``, takes free ones it prefers (rendezvous hashing: every router ranks the partitions
its own way, so two starting together mostly want different ones) and gives up what it holds beyond its share,
so a router that joins gets work and one that dies leaves its share to the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def partition_of(account: str, partitions: int) -> int:
    """The partition of ``account`` (0 .. partitions - 1)."""
    if partitions <= 1:
        return 0
    digest = hashlib.blake2b(account.encode(), digest_size=8, person=b"om-partition").digest()
    return int.from_bytes(digest, "big") % partitions


def accounts_of(partition: int, accounts: Iterable[str], partitions: int) -> list[str]:
    return sorted(a for a in accounts if partition_of(a, partitions) == partition)


def share(partitions: int, routers: int) -> int:
    """How many partitions one router aims to hold."""
    return -(-partitions // max(1, routers))


def preference(router: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{router}\x1f{partition}".encode(), digest_size=8).digest()


def rebalance(
    me: str, held: Iterable[int], free: Iterable[int], routers: int, partitions: int
) -> tuple[list[int], list[int]]:
    """(partitions to try to take, partitions to give up) for router ``me`` holding ``held``, with ``free``
    held by nobody and ``routers`` routers alive (``me`` included)."""
    held, free = sorted(set(held)), sorted(set(free) - set(held))
    target = share(partitions, routers)
    if len(held) < target:
        return sorted(free, key=lambda p: preference(me, p))[: target - len(held)], []
    if len(held) > target:
        return [], sorted(held, key=lambda p: preference(me, p), reverse=True)[: len(held) - target]
    return [], []
