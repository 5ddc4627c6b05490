"""Multi-process (multi-host) start-up.

Call :func:`initialize_distributed` once per process, before any other JAX call. Afterwards
``jax.devices()`` lists the devices of every process, :func:`jaxvae.train.sharding.make_data_mesh`
spans them, and each process feeds its own slice of the batch with
:func:`jaxvae.train.sharding.global_batch_from_process_local`. The train step itself is unchanged.

On TPU pods, and GPU clusters under SLURM / Open MPI / Kubernetes, every argument can be left
``None`` (``jax.distributed.initialize`` detects them). On CPU (tests, debugging) pass all three;
cross-process collectives then use Gloo over TCP (``jax_cpu_collectives_implementation='gloo'``).
"""

from __future__ import annotations

import jax

__all__ = ["initialize_distributed"]


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = 300,
) -> None:
    """Join this process to a multi-process JAX run (idempotent).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service; ``None`` to
        auto-detect (cluster environments) or read ``JAX_COORDINATOR_ADDRESS``.
      num_processes: total number of processes (>= 1), or ``None`` to auto-detect.
      process_id: this process's index in ``[0, num_processes)``, or ``None`` to auto-detect.
      initialization_timeout: seconds to wait for every process to connect before failing.

    Raises:
      ValueError: if the arguments are inconsistent (bad types or ``process_id`` out of range).
      RuntimeError: if JAX computations already ran in this process, before initialisation.
    """
    if num_processes is not None and (
        isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1
    ):
        raise ValueError(f"`num_processes` must be an int >= 1; got {num_processes!r}.")
    if process_id is not None:
        if isinstance(process_id, bool) or not isinstance(process_id, int) or process_id < 0:
            raise ValueError(f"`process_id` must be an int >= 0; got {process_id!r}.")
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"`process_id` must be < num_processes={num_processes}; got {process_id}.")
    if coordinator_address is not None and (not isinstance(coordinator_address, str) or ":" not in coordinator_address):
        raise ValueError(f"`coordinator_address` must be 'host:port'; got {coordinator_address!r}.")
    if jax.distributed.is_initialized():
        return
    # Gloo is JAX's default for cross-process CPU collectives; set it explicitly so a user config of
    # 'none' does not leave a CPU run without collectives.
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=initialization_timeout,
    )
