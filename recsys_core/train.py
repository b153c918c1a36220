"""One data-parallel training step for every model of the project (SASRec, GRAM).

Data parallelism is jit over a one-axis mesh `('data',)`: the train state (parameters, optimizer
state, step, RNG key) is replicated (`P()`), the batch is sharded on its first axis
(`P('data')`), and XLA inserts the gradient all-reduce. The same code runs on 1 CPU device, on
`XLA_FLAGS=--xla_force_host_platform_device_count=8` fake devices, on a GPU, and on several hosts
(after `jax.distributed.initialize()`, each process feeds its own rows of the global batch through
`global_batch`).

A loss function has the signature
  loss_fn(params, batch, rng) -> (loss, aux)
with `loss` a scalar float32 (the mean over the global batch) and `aux` a dict of scalars that is
returned as metrics. `rng` is a fresh key per step: `fold_in(state.rng, state.step)`, so a resumed run
draws exactly the dropout masks of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P
from recsys_core.errors import ConfigError, DivergenceError

LossFn = Callable[[Any, Any, jax.Array], tuple]


@flax.struct.dataclass
class TrainState:
  """Everything the device holds of a run.

  Attributes:
    step: [] int32 number of optimizer updates so far.
    params: the model's parameter pytree.
    opt_state: the optax optimizer state.
    rng: [2] uint32 base PRNG key of the run (per-step keys are folded in from it).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def create_state(params: Any, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
  """A fresh TrainState at step 0 (on the default device; `replicate` puts it on a mesh)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    rng=jax.random.PRNGKey(seed))


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """A ('data',) mesh over `devices` (default: all devices of all processes).

  Auto axis types: JAX's default (Explicit) makes unplaced arrays fail in the backward pass.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(np.array(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Every leaf of `tree` replicated on all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int) -> None:
  """Raises ValueError unless every process can hold an equal share of a global batch."""
  if batch_size % jax.process_count():
    raise ConfigError(f"batch_size={batch_size} must be a multiple of the number of processes "
                     f"{jax.process_count()}")


def pad_rows(index: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One global batch of example indices at its full static size.

  Args:
    index: int [<= batch_size], the batch's examples (a short last batch included).

  Returns:
    (int [batch_size] indices, float32 [batch_size] weights): rows past the end of `index` repeat
    index[0] with weight 0.
  """
  real = np.arange(batch_size) < len(index)
  return index[np.where(real, np.arange(batch_size), 0)], real.astype(np.float32)


def process_share(batch_size: int) -> slice:
  """This process's rows of a global batch of `batch_size` rows (a multiple of process_count)."""
  local = batch_size // jax.process_count()
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def process_rows(index: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """This process's share of one global batch of example indices.

  Args:
    index: int [<= batch_size], the global batch's examples (a short last batch included).
    batch_size: rows of every global batch, a multiple of jax.process_count().

  Returns:
    (int [batch_size // process_count] example indices, float32 weights of the same shape): the
    process's rows of `pad_rows(index, batch_size)`, so every batch has one static shape.
  """
  index, weights = pad_rows(index, batch_size)
  mine = process_share(batch_size)
  return index[mine], weights[mine]


def global_batch(host_batch: Any, mesh: jax.sharding.Mesh) -> Any:
  """Process-local numpy rows -> global arrays sharded on axis 0 over the mesh.

  Args:
    host_batch: pytree of numpy arrays [local_batch, ...]; process p holds rows
      p * local_batch:(p + 1) * local_batch of the global batch (one process: the whole batch).
      local_batch must be a multiple of the process's number of devices.

  Returns:
    The same pytree of jax.Arrays [local_batch * process_count, ...] sharded P('data').
  """
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      host_batch)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> Callable[[TrainState, Any], tuple]:
  """The jit-compiled data-parallel step `(state, batch) -> (state, metrics)`.

  Args:
    loss_fn: (params, batch, rng) -> (scalar loss, dict of scalar aux metrics).
    optimizer: the optax transformation that made `state.opt_state`.
    mesh: a ('data',) mesh; the state must be replicated on it (`replicate`) and the batch sharded
      (`global_batch`).

  Returns:
    step(state, batch) -> (new state, metrics) with metrics = {"loss", "grad_norm", "finite", **aux}
    (replicated scalars). The state argument is donated: do not reuse it after the call. A step
    whose loss or gradients are not finite leaves the state unchanged (its step counter too) and
    reports finite=False; `check_finite` turns that into an error.
  """
  state_sharding = replicated(mesh)
  batch_sharding = data_sharded(mesh)

  def step(state: TrainState, batch: Any) -> tuple:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
    return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}

  return jax.jit(step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, state_sharding), donate_argnums=(0,))


def check_finite(metrics: dict, step: int) -> None:
  """Raise FloatingPointError when a step's loss or gradient was NaN/inf (metrics on the host)."""
  if not bool(metrics["finite"]):
    raise DivergenceError(
        f"non-finite loss {float(metrics['loss'])} or gradient norm {float(metrics['grad_norm'])} at "
        f"step {step}; the update was skipped and the run stopped (lower the learning rate, check the "
        "data and the item-embedding initialisation)")


def masked_optimizer(optimizer: optax.GradientTransformation, frozen: Callable[[tuple], bool]
                     ) -> optax.GradientTransformation:
  """`optimizer` on every parameter except those whose key path `frozen(path)` is true, which get
  exactly zero updates (and no optimizer state).

  Args:
    frozen: key path as a tuple of str (e.g. ("item_embedding", "embedding")) -> bool.
  """
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if frozen(path_names(path)) else "train", params)
  return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def path_names(path) -> tuple:
  """A jax key path as plain strings: (DictKey('params'), SequenceKey(0)) -> ("params", "0")."""
  names = []
  for key in path:
    attr = next((a for a in ("key", "name", "idx") if hasattr(key, a)), None)
    names.append(str(getattr(key, attr)) if attr else str(key))
  return tuple(names)
