"""Orbax checkpoints of a training run: the latest and the best, each saved atomically.

Layout: `DIR/checkpoints/latest/<step>/` and `DIR/checkpoints/best/<step>/`, each an orbax
CheckpointManager (max_to_keep=1) item pair:
  state: the device TrainState (params, optimizer state, step, RNG key), `ocp.args.StandardSave`;
  meta:  JSON of the host-side loop state (epoch, position in the epoch, best metric, patience
         counter, validation metrics), `ocp.args.JsonSave`.
Orbax writes into a temporary folder and renames it when complete, so a run killed at any moment
leaves either the previous or the new checkpoint, never a torn one. Restores check the stored tree
(key paths and shapes) against the state the config builds before reading any array, and refuse a
mismatch with one line naming the first differing key.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from recsys_core.train import path_names
from recsys_core.errors import ConfigError

KINDS = ("latest", "best")


class CheckpointMismatchError(ConfigError):
  """A checkpoint whose tree does not match the model/optimizer the config builds."""


class Checkpoints:
  """The latest and best checkpoints of the run in `workdir`."""

  def __init__(self, workdir: str):
    root = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.managers = {
        kind: ocp.CheckpointManager(
            os.path.join(root, kind),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True,
                # Synchronous: the train step donates the state buffers right after a save.
                enable_async_checkpointing=False))
        for kind in KINDS}

  def step(self, kind: str = "latest") -> Optional[int]:
    """Step of the `kind` checkpoint, None if there is none."""
    return self.managers[kind].latest_step()

  def save(self, kind: str, state: Any, meta: dict) -> None:
    """Save `state` (a TrainState) and `meta` (JSON-able dict) under step int(state.step).

    Saving a step that `kind` already holds is a no-op: a resumed run that repeats the steps after
    its latest checkpoint reproduces them bit for bit.
    """
    manager = self.managers[kind]
    step = int(jax.device_get(state.step))
    if step in manager.all_steps():
      return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)))

  def restore(self, kind: str, target: Any) -> tuple[Any, dict]:
    """(state, meta) of the `kind` checkpoint.

    Args:
      kind: "latest" or "best".
      target: a TrainState of arrays or jax.ShapeDtypeStructs (with shardings) that fixes the
        structure, shapes, dtypes and placement of the restored state.

    Raises:
      FileNotFoundError: there is no such checkpoint.
      CheckpointMismatchError: the stored tree differs from `target` (message names the key).
    """
    manager = self.managers[kind]
    step = manager.latest_step()
    if step is None:
      raise ConfigError(f"{manager.directory}: no checkpoint; train first (--mode=train)")
    where = f"checkpoint {manager.directory}/{step}"
    check_tree(manager.item_metadata(step)["state"], target, where)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    """Block until pending (asynchronous) saves are on disk."""
    for manager in self.managers.values():
      manager.wait_until_finished()

  def close(self) -> None:
    for manager in self.managers.values():
      manager.close()


def leaf_shapes(tree: Any) -> dict[str, tuple]:
  """{"params.item_embedding.embedding": (n, d), ...} for every array leaf of a pytree."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {".".join(path_names(path)): tuple(leaf.shape) for path, leaf in flat}


def check_tree(stored_metadata: Any, target: Any, where: str) -> None:
  """Raise CheckpointMismatchError unless the stored tree has the key paths and shapes of target."""
  tree = getattr(stored_metadata, "tree", stored_metadata)
  stored = {leaf.name: tuple(leaf.shape) for leaf in jax.tree.leaves(tree)}
  wanted = leaf_shapes(target)
  for name, shape in wanted.items():
    if name not in stored:
      raise CheckpointMismatchError(
          f"{where} does not match the config: it lacks {name} {shape} (different model or "
          "optimizer settings?)")
    if stored[name] != shape:
      raise CheckpointMismatchError(
          f"{where} does not match the config: {name} has shape {stored[name]} in the checkpoint "
          f"but {shape} in the config's model")
  for name in stored:
    if name not in wanted:
      raise CheckpointMismatchError(
          f"{where} does not match the config: it has {name} {stored[name]}, which the config's "
          "model lacks")

