"""One job of several processes on JAX's distributed runtime (multi-controller: every process runs
the same program on its own devices; collectives span all of them).

`initialize` must run before anything else touches a JAX backend. After it, `jax.devices()` lists
every process's devices (the global mesh of `recsys_core.train.make_mesh`), `jax.local_devices()`
this process's, and `jax.process_index()` / `jax.process_count()` say who is who. On CPUs the
collectives go through gloo, so two processes on one machine (each with
`--xla_force_host_platform_device_count=N`) form a 2N-device mesh, the same code path as hosts of a
TPU pod slice or a GPU cluster.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from recsys_core.errors import ConfigError

# A process that stops answering (killed, its host lost) ends the others after this many seconds,
# through the coordination service's heartbeat, instead of leaving them blocked in a collective.
HEARTBEAT_TIMEOUT_S = int(os.environ.get("RECSYS_HEARTBEAT_TIMEOUT_S", "60"))
# How long process 0 waits for all the others to join at start.
INITIALIZATION_TIMEOUT_S = int(os.environ.get("RECSYS_INITIALIZATION_TIMEOUT_S", "300"))


def cluster_detected() -> bool:
  """A SLURM or Open MPI job of several tasks, whose environment gives JAX every address it needs."""
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", os.environ.get("SLURM_NPROCS", "1")) or 1)
  mpi_ranks = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1)
  return ("SLURM_JOB_ID" in os.environ and slurm_tasks > 1) or mpi_ranks > 1


def initialize(mode: str = "auto", coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None, process_id: Optional[int] = None,
               local_device_ids: Optional[Sequence[str]] = None) -> bool:
  """Join the job's other processes, if there is a job; returns whether the runtime was started.

  Args:
    mode: "auto" (explicit flags or a detected SLURM / Open MPI job), "on" (always: JAX detects
      the cluster, e.g. a Cloud TPU pod slice) or "off" (one process).
    coordinator_address: "host:port" of process 0; with num_processes and process_id.
    local_device_ids: this process's devices on its host (default: all of them).

  Raises:
    ConfigError: an incomplete or contradictory set of flags.
  """
  explicit = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
              "--process_id": process_id}
  given = [name for name, value in explicit.items() if value is not None]
  if mode == "off":
    if given:
      raise ConfigError(f"{', '.join(given)} given with --distributed=off; drop one or the other")
    return False
  if given and len(given) < len(explicit):
    missing = [name for name in explicit if name not in given]
    raise ConfigError(f"{', '.join(given)} given without {', '.join(missing)}: a job of several "
                      "processes needs all three")
  if given and not 0 <= process_id < num_processes:
    raise ConfigError(f"--process_id={process_id} is outside 0..{num_processes - 1} "
                      f"(--num_processes={num_processes})")
  if not given and not (mode == "on" or cluster_detected()):
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes,
      process_id=process_id,
      local_device_ids=[int(i) for i in local_device_ids] if local_device_ids else None,
      initialization_timeout=INITIALIZATION_TIMEOUT_S,
      heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  return True


def fingerprint(*parts) -> str:
  """A short sha256 of text and numpy arrays, e.g. a dataset's CSR arrays."""
  digest = hashlib.sha256()
  for part in parts:
    digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray)
                  else str(part).encode())
  return digest.hexdigest()[:16]


def check_same(what: str, value: str) -> None:
  """Refuse a job whose processes disagree on `value` (a config, a dataset's fingerprint).

  Raises:
    ConfigError: naming `what` and the processes that differ from process 0.
  """
  if jax.process_count() == 1:
    return
  digest = np.frombuffer(hashlib.sha256(value.encode()).digest(), np.uint8)
  every = np.asarray(multihost_utils.process_allgather(digest))  # [processes, 32]
  differ = [p for p in range(every.shape[0]) if not np.array_equal(every[p], every[0])]
  if differ:
    raise ConfigError(f"the processes of this job disagree on {what}: process(es) "
                      f"{', '.join(map(str, differ))} differ from process 0; start every process "
                      "with the same command (only --process_id differs) on the same files")


def check_same_job(config, workdir: str) -> None:
  """Every process runs the same config on the same workdir."""
  check_same("the config and --workdir", f"{os.path.abspath(workdir)}\n{config.to_json_best_effort()}")
