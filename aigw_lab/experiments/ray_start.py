"""Starting or joining the Ray cluster of a `aigw_lab.experiments.ray_executor.RayExecutor`
run, with a local start kept on the loopback interface.

Ray picks a node's address with ``ray._private.services.get_node_ip_address``: the
machine's outward address (found by routing towards the cluster or the internet) unless Ray
clusters are disabled (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once when ``ray`` is
imported), in which case it is the loopback address. ``ray.init(_node_ip_address=
"127.0.0.1")`` alone is not enough: Ray replaces a loopback address by that same outward
address, and so does joining ``127.0.0.1:<port>``. So `init_ray` turns that constant off
while ``ray.init`` runs (and puts it back), for a local start and for joining a cluster at a
loopback address: the GCS, the raylet, the workers and Ray's agents then listen on
127.0.0.1 only (tests/ray_runs check every listening socket). A cluster at another address,
or ``"auto"``, is joined as Ray does by default. If a Ray version no longer has the
constant, ``ray.init`` runs as it is, binding the machine's address as before.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["LOOPBACK", "init_ray", "is_loopback_address"]

#: The address a local start listens on.
LOOPBACK = "127.0.0.1"


def is_loopback_address(address: str | None) -> bool:
    """True for None (a local start) and for ``[ray://]host:port`` with a loopback host
    (``127.0.0.1``, ``::1``, ``localhost``)."""
    if address is None:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def init_ray(ray: ModuleType, *, address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address``, or start a local one with ``num_cpus`` CPUs, on the
    loopback interface when `is_loopback_address` (see the module docstring); nothing when
    this process has already joined one. Without the dashboard; Ray's usage statistics off
    unless ``RAY_USAGE_STATS_ENABLED`` says otherwise."""
    if ray.is_initialized():
        return
    # No usage report leaves the machine unless the user asked for it.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is not None:
        options["address"] = address
    else:
        options["_node_ip_address"] = LOOPBACK
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
    if not is_loopback_address(address):
        ray.init(**options)
        return
    with _single_node(ray):
        ray.init(**options)


@contextlib.contextmanager
def _single_node(ray: ModuleType) -> Iterator[None]:
    """Ray's "clusters enabled" constant off for the block, then as it was."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before
