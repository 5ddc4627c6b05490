"""Data-parallel placement: a 1-D device mesh, replicated state, batches split over the data axis.

The layout is the simplest data parallelism: every device holds the whole state (``P()``) and a
``1 / n_devices`` slice of each batch along its leading axis (``P('data')``). The same code spans
hosts: after :func:`jaxvae.train.distributed.initialize_distributed`, ``jax.devices()`` lists every
process's devices, and each process supplies its own slice with
:func:`global_batch_from_process_local`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae.train.steps import check_batch_divisible
from jaxvae.typing import PyTree

__all__ = ["make_data_mesh", "replicate", "shard_batch", "global_batch_from_process_local"]


def make_data_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = "data") -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) with one axis.

    Built with ``jax.sharding.Mesh``, whose axes are ``Auto`` (the compiler places collectives),
    unlike ``jax.make_mesh``, which defaults to ``Explicit`` axes.

    Raises:
      ValueError: if ``devices`` is empty or ``axis_name`` is not a non-empty string.
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"`axis_name` must be a non-empty string; got {axis_name!r}.")
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 0:
        raise ValueError("`devices` must hold at least one device; got none.")
    return Mesh(np.asarray(devices, dtype=object).reshape(-1), (axis_name,))


def _axis(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"`mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}.")
    return mesh.axis_names[0]


def _global_put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Place host-identical ``x`` (the full global value) under ``sharding``, across processes."""
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_global_put(jax.random.key_data(x), sharding), impl=impl)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place a full copy of every leaf of ``tree`` on every device of ``mesh`` (sharding ``P()``).

    In a multi-process run each process must pass the same values (e.g. parameters initialised from
    the same seed); each process then fills its own devices.
    """
    sharding = NamedSharding(mesh, P())
    _axis(mesh)
    if mesh.is_multi_process:
        return jax.tree.map(lambda x: _global_put(x, sharding), tree)
    return jax.device_put(tree, sharding)


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Split each leaf of ``batch`` along its leading axis over the mesh's data axis.

    Args:
      batch: pytree of arrays ``[B, ...]`` holding the *global* batch (in a multi-process run, every
        process passes the same global batch; prefer :func:`global_batch_from_process_local`).
      mesh: a mesh from :func:`make_data_mesh`.

    Raises:
      ValueError: naming the batch entry, if ``B`` is not divisible by the data-axis size.
    """
    axis = _axis(mesh)
    n = int(mesh.shape[axis])
    check_batch_divisible(batch, n, f"{n} devices on mesh axis {axis!r}")
    sharding = NamedSharding(mesh, P(axis))
    if mesh.is_multi_process:
        return jax.tree.map(lambda x: _global_put(x, sharding), batch)
    return jax.device_put(batch, sharding)


def global_batch_from_process_local(batch: PyTree, mesh: Mesh) -> PyTree:
    """Assemble the global batch from each process's own slice (multi-host data loading).

    Process ``i`` passes its ``[b, ...]`` slice (e.g. from ``BatchIterator(..., process_index=i,
    process_count=n)``); the result is a global ``[n * b, ...]`` array split over the mesh's data
    axis, the slices ordered by process. With one process this equals :func:`shard_batch`.

    Raises:
      ValueError: naming the batch entry, if ``b`` is not divisible by this process's device count
        on the mesh.
    """
    axis = _axis(mesh)
    local = len(mesh.local_devices)
    check_batch_divisible(batch, local, f"this process's {local} devices on mesh axis {axis!r}")
    sharding = NamedSharding(mesh, P(axis))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
