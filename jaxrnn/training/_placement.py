"""Devices for training: the mesh a run uses and how each of its arrays is placed on it."""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxrnn.training._config import TrainingError


class Placement:
    """Where arrays live: the batch axis split over a 1-D device mesh, everything else replicated.

    With several processes each gives ``devices / processes`` of its own
    devices, so every process holds an equal share of the batch.
    """

    def __init__(self, devices: int):
        available, processes = jax.devices(), jax.process_count()
        if processes == 1 and devices > len(available):
            raise TrainingError(
                f"--devices {devices} but JAX sees {len(available)} ({available[0].platform}). On a CPU, set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting; on accelerators, "
                f"use at most {len(available)}."
            )
        share, local = devices // processes, jax.local_device_count()
        if devices % processes or share > local:
            raise TrainingError(
                f"--devices {devices} with {processes} processes: each process must give the same number of its "
                f"{local} devices, so --devices must be a multiple of {processes} and at most {processes * local}. "
                f"Use --devices {processes * local} (every device)."
            )
        by_process: dict[int, list] = {}
        for device in available:
            by_process.setdefault(device.process_index, []).append(device)
        chosen = [device for index in sorted(by_process) for device in by_process[index][:share]]
        self.mesh = jax.sharding.Mesh(np.array(chosen), ("data",))
        self.local_share = share
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.rows = NamedSharding(self.mesh, PartitionSpec("data"))  # carry leaves (batch, H); one flag per device
        self.columns = NamedSharding(self.mesh, PartitionSpec(None, "data"))  # ids (T, batch)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def carry(self, tree):
        return jax.tree.map(lambda leaf: _local_shards(np.asarray(leaf), self.rows), tree)

    def ids(self, array: np.ndarray):
        return _local_shards(array, self.columns)

    def flags(self, value: bool):
        """One boolean per device of the mesh, ``value`` on this process's devices."""
        return jax.make_array_from_process_local_data(self.rows, np.full(self.local_share, value))


def _local_shards(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """``array`` (the same on every process) as a global array, each process sending only its own devices' slices.

    ``jax.device_put`` of a host array onto devices of several processes
    first checks that every process passed the same value, a blocking
    cross-process gather of the whole array, which would stall every step.
    """
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@functools.lru_cache(maxsize=8)
def placement(devices: int) -> Placement:
    """One placement per device count, so that :func:`_steps.compiled`'s cache can hit."""
    return Placement(devices)
