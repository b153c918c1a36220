"""Train (mode 'train') or evaluate the best checkpoint (mode 'eval') of a sequential backbone
(config.backbone: SASRec, GRU4Rec or BERT4Rec, seqrec/backbones.py) under leave-one-out.

Writes into the workdir:
  metrics.jsonl   one line per validation ("step", "epoch", "train/loss", "valid/ndcg@10", ...)
  checkpoints/    orbax: latest/ and best/ (see recsys_core/checkpoint.py)
  metrics.json    final: "test/recall@10", "test/ndcg@20", ... of the best checkpoint, its
                  "valid/..." metrics, "best/epoch", "time/..." and the data sizes
  eval.json       (mode 'eval') the metrics of the best checkpoint, recomputed, and its per-user
                  test metrics in eval_test_per_user.npz
  test_per_user.npz  the best checkpoint's per-user test metrics ("recall@10": [num_users], ...;
                  NaN for users without a test item), for paired comparisons between runs
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import optax
import scipy.sparse as sp

from recsys_core import evaluation
from recsys_core import loop
from recsys_core import metrics as metrics_lib
from recsys_core import readers
from recsys_core import splits
from recsys_core import train
from recsys_core.checkpoint import Checkpoints
from recsys_core.dataset import Dataset, EvalSet
from seqrec import backbones
from seqrec import data as data_lib
from seqrec import initialisers
from seqrec import sasrec
from recsys_core.errors import ConfigError, DataError


def build_model(config: ml_collections.ConfigDict, num_items: int, item_table_module=None):
  """The config.backbone model; item_table_module: an initialiser's table module
  (`initialisers.ItemInit.module`) or None."""
  return backbones.build_model(config, num_items, item_table_module)


def build_optimizer(config: ml_collections.ConfigDict,
                    frozen_parts: bool = False) -> optax.GradientTransformation:
  """frozen_parts: the model has an initialiser's "frozen_*" parameters (zero updates)."""
  optimizer = optax.adam(config.learning_rate)
  if config.weight_decay:  # torch Adam's L2 weight decay (RecBole's `weight_decay`), added to grads
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay), optimizer)
  if config.freeze_item_embedding or frozen_parts:
    optimizer = train.masked_optimizer(optimizer, lambda path: (
        (config.freeze_item_embedding and sasrec.is_item_table(path))
        or (frozen_parts and initialisers.is_frozen(path))))
  return optimizer


def item_table(config: ml_collections.ConfigDict) -> Any:
  """The [num_items, hidden] initial item table from config.item_init (a .npy path), or None."""
  if not config.item_init:
    return None
  if not os.path.isfile(config.item_init):
    raise DataError(f"{config.item_init}: no such file (config.item_init)")
  return np.load(config.item_init)


def eval_sets(ds: Dataset, mask_history: bool) -> dict[str, EvalSet]:
  """Leave-one-out valid/test sets; without mask_history (RecBole) no item is excluded."""
  split = splits.leave_one_out(ds)
  out = {"valid": split.valid, "test": split.test}
  if not mask_history:
    empty = sp.csr_matrix(split.test.fold_in.shape, dtype=np.float32)
    out = {name: EvalSet(fold_in=empty, target=s.target) for name, s in out.items()}
  return out


def make_score_fn(model):
  """(params, fold_in, item_seq [b, max_len]) -> [b, num_items] scores of the real items (the
  padding column 0 is dropped, so it is never ranked)."""
  def score_fn(params, unused_fold_in, item_seq):
    return model.apply({"params": params}, item_seq, method=type(model).scores)[:, 1:]
  return score_fn


def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
  """values[i] belongs to user order[i]: back to user order."""
  out = np.empty_like(values)
  out[order] = values
  return out


class Evaluator(evaluation.PerUserEvaluator):
  """Full-ranking Recall/NDCG of the model on one evaluation set (see sasrec.py for masking)."""

  def __init__(self, config, score_fn, ds: Dataset, which: str, eval_set: EvalSet, mesh=None,
               per_user_path: str | None = None):
    """score_fn: from `make_score_fn`; share one between evaluators (one compilation).
    mesh: the training mesh, over which users are split (None: the default device).
    per_user_path: if given, each call also writes the per-user metrics there (.npz)."""
    super().__init__(which, per_user_path)
    self.config, self.score_fn, self.mesh = config, score_fn, mesh
    histories = data_lib.eval_histories(ds, config.max_len, which)
    if eval_set.target.shape[0] != len(histories):
      raise ValueError(f"the {which} set has {eval_set.target.shape[0]} rows, the dataset "
                       f"{len(histories)} users: pass the set of this dataset")
    # Users go shortest history first, so each batch is cut to its longest history
    # (`data_lib.trim_padding`): on Beauty that is 24% of the full-width positions.
    self.order = np.argsort((histories != sasrec.PADDING).sum(axis=1), kind="stable")
    self.histories = histories[self.order]
    self.eval_set = EvalSet(fold_in=sp.csr_matrix(eval_set.fold_in)[self.order],
                            target=sp.csr_matrix(eval_set.target)[self.order])

  def per_user(self, params: Any) -> dict:
    c = self.config
    per_user = metrics_lib.evaluate_per_user(
        self.score_fn, params, self.eval_set, c.ks, normalization=c.recall_normalization,
        batch_size=c.eval_batch_size, progress=c.progress, desc=self.which,
        batch_inputs=lambda start, stop: data_lib.trim_padding(self.histories[start:stop]),
        mesh=self.mesh)
    return {name: unsort(values, self.order) for name, values in per_user.items()}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict:
  if mode not in ("train", "eval"):
    raise ConfigError(f"mode={mode!r}: seqrec runs support --mode=train and --mode=eval")
  start = time.perf_counter()
  ds = readers.load_dataset(config.dataset, config.data_dir)
  sets = eval_sets(ds, config.mask_history)
  init = initialisers.build(config, ds)  # None: the ID-only table (config.init.kind="id")
  model = build_model(config, ds.num_items, init and init.module)
  optimizer = build_optimizer(config, bool(init and init.frozen))
  mesh = train.make_mesh(jax.devices()[:config.num_devices] if config.num_devices else None)
  params = (backbones.init_params(model, config.seed, item_table(config)) if init is None
            else initialisers.init_params(model, config.seed, init))
  state = train.replicate(train.create_state(params, optimizer, config.seed), mesh)
  checkpoints = Checkpoints(workdir)
  score_fn = make_score_fn(model)
  valid = Evaluator(config, score_fn, ds, "valid", sets["valid"], mesh)
  test = Evaluator(config, score_fn, ds, "test", sets["test"], mesh,
                   per_user_path=os.path.join(workdir, "test_per_user.npz"))
  load_s = time.perf_counter() - start

  if mode == "eval":
    return loop.evaluate_best(workdir, checkpoints, state, [valid, test], {})

  batches = backbones.train_batches(config, ds)
  examples = batches.examples
  rows = batches.rows_per_batch()
  logging.info("%s: %d users, %d items, %d training examples, %d batches/epoch on %d devices; "
               "%.1f rows of %d positions per batch (%d shapes)", ds.name, ds.num_users,
               ds.num_items, len(examples), batches.num_batches, mesh.size, rows.mean(),
               config.max_len, len(set(rows)))
  step_fn = train.make_train_step(
      backbones.loss_fn(model), optimizer, mesh)
  start = time.perf_counter()
  state, meta = loop.train_loop(config, workdir, state=state, step_fn=step_fn, batches=batches,
                                mesh=mesh, validate=valid, checkpoints=checkpoints)
  train_s = time.perf_counter() - start
  return loop.final_report(workdir, checkpoints, state, meta, [valid, test], {
      "time/load_s": load_s, "time/train_s": train_s, "data/users": ds.num_users,
      "data/items": ds.num_items, "data/train_examples": len(examples), "devices": mesh.size})
