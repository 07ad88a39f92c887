"""A real two-node Ray cluster on this machine, started once for the module that asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Keep every Ray process on loopback: with clusters "disabled" Ray takes 127.0.0.1 as the node address instead of the
# machine's interface address (read at import, and inherited by the raylets and workers the cluster starts).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")  # CI installs it through '.[dev]'


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
