"""The one evaluation loop: batches of users through a jitted model call, split over the mesh.

`pipelined` places the parameters on the mesh once, puts each host batch's rows on the devices
(every process passes the same batch and puts only its own devices' rows), and hands back each
batch's outputs as numpy arrays (gathered from every process) one batch behind the dispatch, so the
host consumes batch i while the devices compute batch i + 1. `PerUserEvaluator` is the shape every
trained family's validation/test evaluator shares: per-user metrics, an optional per-user file for
paired comparisons, and the "<split>/<metric>@k" means.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from recsys_core import records


def round_to_mesh(batch_size: int, mesh: Optional[jax.sharding.Mesh]) -> int:
  """batch_size rounded up to a multiple of the mesh's devices (unchanged without a mesh)."""
  return batch_size if mesh is None else -(-batch_size // mesh.size) * mesh.size


def pipelined(fn: Callable[..., Any], params: Any, batches: Iterable[tuple[Any, tuple]],
              mesh: Optional[jax.sharding.Mesh] = None) -> Iterator[tuple[Any, Any]]:
  """Yields (key, numpy outputs of fn(params, *inputs)) for each (key, inputs) of `batches`.

  Args:
    fn: a jitted function (params, *inputs) -> pytree of arrays whose leading axis is the batch.
    params: pytree, replicated on the mesh (or put on the default device) once.
    batches: (key, inputs): inputs a tuple of pytrees of numpy arrays [batch, ...], the batch a
      multiple of the mesh's size (`round_to_mesh`); key is passed through (e.g. user indices).
    mesh: a ('data',) mesh over which each batch's rows are split, or None.
  """
  if mesh is None:
    params, to_device = jax.device_put(params), jnp.asarray
  else:
    params = jax.device_put(params, NamedSharding(mesh, P()))
    rows = NamedSharding(mesh, P("data"))
    to_device = lambda x: jax.make_array_from_callback(x.shape, rows, lambda index: x[index])
  pending = None
  for key, inputs in batches:
    outputs = fn(params, *jax.tree.map(to_device, inputs))
    if pending is not None:
      yield pending[0], _to_host(pending[1])
    pending = (key, outputs)
  if pending is not None:
    yield pending[0], _to_host(pending[1])


def _to_host(tree: Any) -> Any:
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # rows on other hosts' devices
      x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)
  return jax.tree.map(fetch, tree)


class PerUserEvaluator:
  """Base of the validation/test evaluators of the trained families (SASRec, GRAM).

  Subclasses implement `per_user(params) -> {"recall@k": [num_users], ...}`; calling the evaluator
  returns {"<which>/<metric>": mean over users} and, with a per_user_path, writes the per-user
  values there  for paired comparisons between runs on the same users.
  """

  def __init__(self, which: str, per_user_path: Optional[str] = None):
    self.which, self.per_user_path = which, per_user_path

  def per_user(self, params: Any) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def per_user_extras(self) -> dict[str, np.ndarray]:
    """Arrays written beside the per-user metrics (e.g. which user each row is)."""
    return {}

  def __call__(self, params: Any) -> dict:
    from recsys_core import metrics  # pylint: disable=import-outside-toplevel
    values = self.per_user(params)
    if self.per_user_path:
      records.write_arrays(self.per_user_path, {**values, **self.per_user_extras()})
    return records.prefixed(self.which, metrics.mean_over_users(values))
