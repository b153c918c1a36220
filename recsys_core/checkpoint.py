"""Orbax checkpoints of a training run: the latest and the best, each saved atomically.

Layout: `DIR/checkpoints/latest/<step>/` (the two newest) and `DIR/checkpoints/best/<step>/` (one),
each an orbax CheckpointManager item pair:
  state: the device TrainState (params, optimizer state, step, RNG key), `ocp.args.StandardSave`;
  meta:  JSON of the host-side loop state (epoch, position in the epoch, best metric, patience
         counter, validation metrics), `ocp.args.JsonSave`.
Orbax writes into a temporary folder and renames it when complete, so a run killed at any moment
leaves either the previous or the new checkpoint, never a torn one; a save that fails for lack of
space ends with one line (DiskFullError) and leaves the previous checkpoints as they were. Files can
still be damaged afterwards (a disk or file-system fault, a copy cut short): a restore then falls
back to the newest checkpoint of its kind that reads, logging why, and ends with one line naming the
folder when none does. Restores check the stored tree (key paths and shapes) against the state the
config builds before reading any array, and refuse a mismatch with one line naming the first
differing key. Nothing is written before the first save: --mode=eval only reads.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from absl import logging
import jax
import orbax.checkpoint as ocp

from recsys_core.train import path_names
from recsys_core.errors import ConfigError, MissingFileError, RecsysError
from recsys_core.workdir import disk_full_as_error

# How many checkpoints of each kind are kept: two latest, so a damaged newest one has a fallback.
KEEP = {"latest": 2, "best": 1}
KINDS = tuple(KEEP)


class CheckpointMismatchError(ConfigError):
  """A checkpoint whose tree does not match the model/optimizer the config builds."""


class UnreadableCheckpointError(RecsysError):
  """No checkpoint of a kind restores (torn or damaged files)."""


class Checkpoints:
  """The latest and best checkpoints of the run in `workdir`."""

  def __init__(self, workdir: str):
    self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.managers = {
        kind: ocp.CheckpointManager(
            os.path.join(self.root, kind),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=KEEP[kind], create=False,  # folders made by the first save
                # Synchronous: the train step donates the state buffers right after a save.
                enable_async_checkpointing=False))
        for kind in KINDS}
    # Steps that failed to restore: the next save of such a step replaces it.
    self.unreadable = {kind: set() for kind in KINDS}

  def step(self, kind: str = "latest") -> Optional[int]:
    """Step of the `kind` checkpoint, None if there is none."""
    return self.managers[kind].latest_step()

  def save(self, kind: str, state: Any, meta: dict) -> None:
    """Save `state` (a TrainState) and `meta` (JSON-able dict) under step int(state.step).

    Saving a step that `kind` already holds is a no-op: a resumed run that repeats the steps after
    its latest checkpoint reproduces them bit for bit. A held step that did not restore is replaced.

    Raises:
      DiskFullError: no space left; the checkpoints saved before are intact.
    """
    manager = self.managers[kind]
    step = int(jax.device_get(state.step))
    if step in self.unreadable[kind]:
      manager.delete(step)
      self.unreadable[kind].discard(step)
    if step in manager.all_steps():
      return
    os.makedirs(manager.directory, exist_ok=True)
    with disk_full_as_error(f"{manager.directory}/{step}"):
      manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                 meta=ocp.args.JsonSave(meta)))

  def restore(self, kind: str, target: Any) -> tuple[Any, dict]:
    """(state, meta) of the newest `kind` checkpoint that restores.

    A checkpoint that does not (torn or damaged files) is logged with the reason and the previous
    one tried; the next save of its step replaces it.

    Args:
      kind: "latest" or "best".
      target: a TrainState of arrays or jax.ShapeDtypeStructs (with shardings) that fixes the
        structure, shapes, dtypes and placement of the restored state.

    Raises:
      MissingFileError: there is no such checkpoint.
      CheckpointMismatchError: the stored tree differs from `target` (message names the key).
      UnreadableCheckpointError: none of the `kind` checkpoints restores.
    """
    manager = self.managers[kind]
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      raise MissingFileError(f"{manager.directory}: no checkpoint; train first (--mode=train)")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    reasons = []
    for step in steps:
      where = f"checkpoint {manager.directory}/{step}"
      try:
        check_tree(manager.item_metadata(step)["state"], target, where)
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      except CheckpointMismatchError:
        raise  # the config's model, not the files: an older checkpoint would not match either
      except Exception as error:  # any reader's error (orbax, tensorstore, JSON) on damaged files
        reasons.append(f"step {step}: {_one_line(error)}")
        logging.warning("%s does not restore (%s)%s", where, _one_line(error),
                        "; trying the previous one" if step != steps[-1] else "")
        self.unreadable[kind].add(step)
        continue
      if reasons:
        logging.warning("restored %s instead", where)
      return restored["state"], dict(restored["meta"])
    raise UnreadableCheckpointError(
        f"{manager.directory}: no checkpoint restores ({'; '.join(reasons)}); delete {self.root} "
        "(training restarts from step 0) or use a new --workdir")

  def close(self) -> None:
    for manager in self.managers.values():
      manager.close()


def _one_line(error: BaseException, limit: int = 300) -> str:
  text = " ".join(str(error).split()) or type(error).__name__
  return text if len(text) <= limit else text[:limit] + "..."


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

