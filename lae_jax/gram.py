"""G = X^T X accumulated over the devices of a job: every device sums X_b^T X_b over its own blocks
of users, and one all-reduce (psum over the mesh) adds the devices' partial sums.

Each process densifies only the rows its own devices hold, so a job of several hosts reads X once
in all and the dense work is split evenly. The host route (`linalg.gram_matrix`, a sparse product
in one process) is the faster one on a CPU; this one is for accelerators and several hosts. Peak
device memory: two [n, n] matrices per device (the partial sum and the total).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import scipy.sparse as sp

from recsys_core.precision import HIGHEST


@functools.lru_cache(maxsize=None)
def _kernels(mesh: jax.sharding.Mesh):
  """(accumulate, total): the jitted per-device update and the final all-reduce on `mesh`."""
  def add_block(partial, block):  # [1, n, n], [rows, n] per device
    return partial + jnp.matmul(block.T, block, precision=HIGHEST)[None]

  accumulate = jax.jit(jax.shard_map(add_block, mesh=mesh, in_specs=(P("data"), P("data")),
                                     out_specs=P("data")), donate_argnums=0)
  total = jax.jit(jax.shard_map(lambda partial: jax.lax.psum(partial[0], "data"), mesh=mesh,
                                in_specs=P("data"), out_specs=P()))
  return accumulate, total


def gram_matrix_on_mesh(x: sp.spmatrix, mesh: jax.sharding.Mesh, dtype=np.float32,
                        rows_per_device: int = 1024) -> np.ndarray:
  """X^T X, [n, n] numpy `dtype`, on every process.

  Args:
    x: [m, n] sparse user x item matrix (every process passes the same one).
    mesh: a ('data',) mesh over the job's devices (`recsys_core.train.make_mesh()`).
    rows_per_device: users per device per step (the dense block is [rows_per_device, n]).
  """
  x = sp.csr_matrix(x, dtype=dtype)
  m, n = x.shape
  step_rows = rows_per_device * mesh.size
  rows = NamedSharding(mesh, P("data"))
  accumulate, total = _kernels(mesh)
  partial = jax.make_array_from_callback(
      (mesh.size, n, n), rows,
      lambda index: np.zeros((len(range(*index[0].indices(mesh.size))), n, n), dtype))
  for start in range(0, m, step_rows):
    def block_rows(index, start=start):
      first, last, _ = index[0].indices(step_rows)
      lo, hi = min(start + first, m), min(start + last, m)
      out = np.zeros((last - first, n), dtype)
      out[:hi - lo] = x[lo:hi].toarray()
      return out
    partial = accumulate(partial, jax.make_array_from_callback((step_rows, n), rows, block_rows))
  gram = total(partial)
  return np.array(gram.addressable_data(0))  # a writable host copy
