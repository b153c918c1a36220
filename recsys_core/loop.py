"""The one training loop: epochs of sharded steps, periodic validation, early stopping, resumption.

Config fields read (all families that train share them):
  epochs              maximum number of epochs
  num_train_steps     stop after this many optimizer steps (0: no limit) -- for quick runs
  eval_every_epochs   validate every this many epochs (and when training stops)
  early_stop_metric   validation key to maximise, e.g. "valid/ndcg@10"
  patience            stop after this many validations without improvement
  checkpoint_every_steps  extra mid-epoch checkpoints (0: only after each validation)
  progress            tqdm bars

Every validation appends one line to DIR/metrics.jsonl ({"step", "epoch", "train/loss",
"valid/...", "time/..."}), saves the state as the latest checkpoint and, when the metric improved,
as the best one. A relaunched run restores the latest checkpoint (state + loop position), drops the
metrics.jsonl lines written after it, and continues; since batch order and dropout keys are functions
of (seed, epoch, step), it ends with the parameters and metrics of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterator, Protocol

from absl import logging
import jax
import ml_collections
import tqdm

from recsys_core import records
from recsys_core import train
from recsys_core.checkpoint import Checkpoints


class EpochBatches(Protocol):
  num_batches: int

  def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
    """Host batches number start.. of `epoch` (process-local numpy pytrees)."""


def initial_meta() -> dict:
  """Host-side loop state stored with every checkpoint."""
  return {"epoch": 0, "batch": 0, "loss_sum": 0.0, "loss_count": 0, "best_metric": None,
          "best_step": None, "best_epoch": None, "bad_evals": 0, "stopped": False}


def train_loop(config: ml_collections.ConfigDict, workdir: str, *, state: train.TrainState,
               step_fn: Callable, batches: EpochBatches, mesh: jax.sharding.Mesh,
               validate: Callable[[Any], dict], checkpoints: Checkpoints) -> tuple:
  """Train until epochs / num_train_steps / early stopping; resume from the latest checkpoint.

  Args:
    state: the initial TrainState, replicated on `mesh` (also the restore target).
    step_fn: `recsys_core.train.make_train_step(...)` output.
    batches: epochs of host batches (e.g. `seqrec.data.Batches`).
    validate: params -> {"valid/<metric>@k": float, ...}.
    checkpoints: where to save and restore.

  Returns:
    (final state, meta) with meta["best_step"], meta["best_metric"], meta["best_epoch"].
  """
  log_path = os.path.join(workdir, "metrics.jsonl")
  meta = initial_meta()
  if checkpoints.step("latest") is not None:
    state, meta = checkpoints.restore("latest", state)
    if jax.process_index() == 0:
      _truncate_log(log_path, int(state.step))
    logging.info("resumed from step %d (epoch %d, batch %d)", int(state.step), meta["epoch"],
                 meta["batch"])
  elif os.path.exists(log_path) and jax.process_index() == 0:
    os.unlink(log_path)  # a run that died before its first checkpoint
  step = int(state.step)
  max_steps = config.num_train_steps or math.inf
  epoch_start = time.perf_counter()
  while not meta["stopped"] and meta["epoch"] < config.epochs and step < max_steps:
    epoch = meta["epoch"]
    bar = tqdm.tqdm(total=batches.num_batches, initial=meta["batch"], desc=f"epoch {epoch}",
                    unit="batch", disable=not config.progress)
    pending = None  # the previous step's metrics, read after the next step is dispatched
    for batch in batches.epoch(epoch, meta["batch"]):
      state, metrics = step_fn(state, train.global_batch(batch, mesh))
      if pending is not None:
        _account(meta, pending, step, bar)
      step += 1
      meta["batch"] += 1
      pending = metrics
      last_of_epoch = meta["batch"] == batches.num_batches
      if step >= max_steps:
        break
      if (config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
          and not last_of_epoch):
        _account(meta, pending, step, bar)
        pending = None
        checkpoints.save("latest", state, meta)
    if pending is not None:
      _account(meta, pending, step, bar)
    bar.close()
    if meta["batch"] == batches.num_batches:
      meta["epoch"] += 1
      meta["batch"] = 0
    ended = meta["epoch"] >= config.epochs or step >= max_steps
    if meta["batch"] == 0 and meta["epoch"] % config.eval_every_epochs and not ended:
      checkpoints.save("latest", state, meta)
      continue
    train_s = time.perf_counter() - epoch_start
    start = time.perf_counter()
    valid = validate(state.params)
    record = {"step": step, "epoch": meta["epoch"],
              "train/loss": meta["loss_sum"] / max(meta["loss_count"], 1), **valid,
              "time/train_s": train_s, "time/valid_s": time.perf_counter() - start}
    meta["loss_sum"], meta["loss_count"] = 0.0, 0
    value = valid[config.early_stop_metric]
    if meta["best_metric"] is None or value > meta["best_metric"]:
      meta.update(best_metric=value, best_step=step, best_epoch=meta["epoch"], bad_evals=0)
      checkpoints.save("best", state, meta)
    else:
      meta["bad_evals"] += 1
      meta["stopped"] = meta["bad_evals"] >= config.patience
    record["best/" + config.early_stop_metric] = meta["best_metric"]
    if jax.process_index() == 0:
      records.append_jsonl(log_path, record)
    logging.info("step %d epoch %d: loss %.4f %s %.5f (best %.5f at epoch %s)", step,
                 meta["epoch"], record["train/loss"], config.early_stop_metric, value,
                 meta["best_metric"], meta["best_epoch"])
    checkpoints.save("latest", state, meta)
    epoch_start = time.perf_counter()
  return state, meta


def evaluate_best(workdir: str, checkpoints: Checkpoints, state: train.TrainState,
                  evaluators: list[Callable[[Any], dict]], extra: dict) -> dict:
  """--mode=eval: the best checkpoint on each evaluator, plus `extra`, into DIR/eval.json."""
  state, meta = checkpoints.restore("best", state)
  out = {"best/step": meta["best_step"], **extra}
  for evaluate in evaluators:
    out.update(evaluate(state.params))
  if jax.process_index() == 0:
    records.write_json(os.path.join(workdir, "eval.json"), out)
  return out


def final_report(workdir: str, checkpoints: Checkpoints, state: train.TrainState, meta: dict,
                 evaluators: list[Callable[[Any], dict]], extra: dict) -> dict:
  """After `train_loop`: the best checkpoint on each evaluator, the run's step/epoch counts,
  evaluation time, device and peak RSS, plus `extra` (sizes, load/train seconds), into
  DIR/metrics.json; closes the checkpoints."""
  best, best_meta = checkpoints.restore("best", state)
  start = time.perf_counter()
  out = {}
  for evaluate in evaluators:
    out.update(evaluate(best.params))
  out.update({"best/step": best_meta["best_step"], "best/epoch": best_meta["best_epoch"],
              "train/steps": int(state.step), "train/epochs": meta["epoch"],
              "time/eval_s": time.perf_counter() - start, **extra,
              "device": jax.devices()[0].device_kind,
              "memory/peak_rss_gb": records.peak_rss_gb()})
  checkpoints.close()
  if jax.process_index() == 0:
    records.write_json(os.path.join(workdir, "metrics.json"), out)
  return out


def _account(meta: dict, metrics: dict, step: int, bar: tqdm.tqdm) -> None:
  """Check one step's metrics (a sync point) and add its loss to the epoch's running mean."""
  metrics = jax.device_get(metrics)
  train.check_finite(metrics, step)
  meta["loss_sum"] += float(metrics["loss"])
  meta["loss_count"] += 1
  bar.update(1)
  if meta["loss_count"] % 20 == 0:
    bar.set_postfix(loss=f"{meta['loss_sum'] / meta['loss_count']:.4f}")


def _truncate_log(path: str, step: int) -> None:
  """Keep the metrics.jsonl lines of steps <= step (and no torn last line)."""
  if not os.path.exists(path):
    return
  kept = []
  for line in open(path):
    try:
      if json.loads(line)["step"] <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
    except (json.JSONDecodeError, KeyError):
      pass
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(kept)
  os.replace(tmp, path)
