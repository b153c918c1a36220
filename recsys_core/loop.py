"""The one training loop: epochs of sharded steps, periodic validation, early stopping, resumption.

Config fields read (all families that train share them):
  epochs              maximum number of epochs
  num_train_steps     stop after this many optimizer steps (0: no limit) -- for quick runs
  eval_every_epochs   validate every this many epochs (and when training stops)
  early_stop_metric   validation key to maximise, e.g. "valid/ndcg@10"
  patience            stop after this many validations without improvement
  early_stop_rule     (optional) "strict" (default): a validation improves when its metric is
                      > the best, and training stops after `patience` non-improving ones |
                      "recbole": RecBole's
                      `early_stopping` on metrics rounded to 4 decimals (its metric_decimal_place):
                      a tie counts as an improvement, and it stops after patience + 1 non-improving
  checkpoint_every_steps  extra mid-epoch checkpoints (0: only after each validation)
  progress            tqdm bars

Every validation appends one line to DIR/metrics.jsonl ({"step", "epoch", "train/loss",
"valid/...", "time/..."}), saves the state as the latest checkpoint and, when the metric improved,
as the best one. A relaunched run restores the latest checkpoint (state + loop position), drops the
metrics.jsonl lines written after it, and continues; since batch order and dropout keys are functions
of (seed, epoch, step), it ends with the parameters and metrics of an uninterrupted run.

Preemption: inside `preemptible()` (launch.py wraps every run in it) a SIGTERM, a scheduler's
notice, lets the current step finish, saves it as the latest checkpoint and raises `Preempted`;
launch.py then exits with status PREEMPTED_EXIT = 75 (EX_TEMPFAIL of sysexits.h: try again later),
and the same command resumes from that step. Outside `train_loop` (loading, the final evaluation) a
SIGTERM raises `Preempted` at once, so the run still unwinds (and releases its workdir). In a job of
several processes JAX's preemption service, which owns SIGTERM there, picks a step all processes
stop at.

A write that fails for lack of space (a checkpoint, metrics.jsonl, metrics.json) ends with one line
(`recsys_core.workdir.DiskFullError`); what was written before is intact, and the same command
resumes once there is space.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Protocol

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import tqdm

from recsys_core import records
from recsys_core import train
from recsys_core.checkpoint import Checkpoints
from recsys_core.errors import ConfigError
from recsys_core.workdir import disk_full_as_error

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped on SIGTERM after a checkpoint; rerun to resume


class Preempted(BaseException):
  """The run stopped on SIGTERM; the message says at which step (and that rerunning resumes).

  A request to stop, like KeyboardInterrupt, not an error: `except Exception` (a reader's errors
  in a restore, say) lets it through, and launch.py exits with PREEMPTED_EXIT rather than 2.
  """


class _Sigterm:
  installed = False  # our handler is in place
  deferred = 0  # inside train_loop: only note the signal, the loop stops at the next step's end
  received = False


@contextlib.contextmanager
def preemptible() -> Iterator[None]:
  """SIGTERM stops the block cleanly: see the module docstring. Re-entrant; does nothing off the
  main thread or in a job of several processes (whose SIGTERM JAX's preemption service handles)."""
  if (_Sigterm.installed or threading.current_thread() is not threading.main_thread()
      or jax.process_count() > 1):
    yield
    return
  previous = signal.signal(signal.SIGTERM, _on_sigterm)
  _Sigterm.installed, _Sigterm.received = True, False
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)
    _Sigterm.installed, _Sigterm.received = False, False


def _on_sigterm(signum, frame):
  del signum, frame
  _Sigterm.received = True
  if not _Sigterm.deferred:
    raise Preempted("preempted (SIGTERM) outside training; rerun the same command to resume "
                    "from the latest checkpoint")


def _preemption_requested(step: int) -> bool:
  """Whether to stop after `step`: a SIGTERM was received (by some process of the job)."""
  if jax.process_count() > 1:
    try:  # every process calls this at every step; all stop at the same one
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
      return False
  return _Sigterm.received


class EpochBatches(Protocol):
  num_batches: int

  def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
    """Host batches number start.. of `epoch` (process-local numpy pytrees)."""


EARLY_STOP_RULES = ("strict", "recbole")


def improved(value: float, best: float | None, rule: str) -> bool:
  """Whether a validation metric `value` improves on `best` (None: the first validation) under
  config.early_stop_rule (see the module docstring)."""
  if rule not in EARLY_STOP_RULES:
    raise ConfigError(f"config.early_stop_rule={rule!r}: use one of {', '.join(EARLY_STOP_RULES)}")
  if best is None:
    return True
  if rule == "recbole":
    return round(value, 4) >= round(best, 4)
  return value > best


def patience_spent(bad_evals: int, patience: int, rule: str) -> bool:
  """Whether training stops after `bad_evals` consecutive non-improving validations (RecBole's
  `early_stopping` stops once cur_step > stopping_step)."""
  return bad_evals > patience if rule == "recbole" else bad_evals >= patience


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

  Raises:
    Preempted: after a SIGTERM, once the step it arrived in is saved as the latest checkpoint.
    DiskFullError: a checkpoint or metrics.jsonl could not be written for lack of space.
  """
  with preemptible():
    _Sigterm.deferred += 1
    try:
      out = _train_loop(config, workdir, state, step_fn, batches, mesh, validate, checkpoints)
    finally:
      _Sigterm.deferred -= 1
    if _Sigterm.received:  # during the last validation: training is over and saved
      raise Preempted("preempted (SIGTERM) after the last training step, saved as the latest "
                      "checkpoint; rerun the same command for the final evaluation")
    return out


def _train_loop(config, workdir, state, step_fn, batches, mesh, validate, checkpoints) -> tuple:
  log_path = os.path.join(workdir, "metrics.jsonl")
  meta = initial_meta()
  if checkpoints.step("latest") is not None:
    state, meta = checkpoints.restore("latest", state)
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
      # Every process asks once per step (JAX's preemption sync point): here, or for an epoch's
      # last step after its validation, so that a checkpoint of that step holds the validation.
      if not last_of_epoch and _preemption_requested(step):
        _account(meta, pending, step, bar)
        _stop(checkpoints, state, meta, step)
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
      if _preemption_requested(step):
        _stop(checkpoints, state, meta, step)
      continue
    train_s = time.perf_counter() - epoch_start
    start = time.perf_counter()
    valid = validate(state.params)
    record = {"step": step, "epoch": meta["epoch"],
              "train/loss": meta["loss_sum"] / max(meta["loss_count"], 1), **valid,
              "time/train_s": train_s, "time/valid_s": time.perf_counter() - start}
    meta["loss_sum"], meta["loss_count"] = 0.0, 0
    value = valid[config.early_stop_metric]
    rule = config.get("early_stop_rule", "strict")
    if improved(value, meta["best_metric"], rule):
      meta.update(best_metric=value, best_step=step, best_epoch=meta["epoch"], bad_evals=0)
      checkpoints.save("best", state, meta)
    else:
      meta["bad_evals"] += 1
      meta["stopped"] = patience_spent(meta["bad_evals"], config.patience, rule)
    record["best/" + config.early_stop_metric] = meta["best_metric"]
    with disk_full_as_error(log_path):
      records.append_jsonl(log_path, record)
    logging.info("step %d epoch %d: loss %.4f %s %.5f (best %.5f at epoch %s)", step,
                 meta["epoch"], record["train/loss"], config.early_stop_metric, value,
                 meta["best_metric"], meta["best_epoch"])
    checkpoints.save("latest", state, meta)
    if _preemption_requested(step):
      _stop(checkpoints, state, meta, step)
    epoch_start = time.perf_counter()
  return state, meta


def _stop(checkpoints: Checkpoints, state: train.TrainState, meta: dict, step: int) -> None:
  """Save the state after `step` as the latest checkpoint (if not yet) and raise Preempted."""
  checkpoints.save("latest", state, meta)
  logging.warning("SIGTERM: saved step %d as the latest checkpoint; stopping", step)
  raise Preempted(f"preempted (SIGTERM) at step {step}, saved as the latest checkpoint; rerun the "
                  "same command to resume")


def evaluate_best(workdir: str, checkpoints: Checkpoints, state: train.TrainState,
                  evaluators: list[Callable[[Any], dict]], extra: dict) -> dict:
  """--mode=eval: the best checkpoint on each evaluator, plus `extra`, into DIR/eval.json.

  Writes only eval files: an evaluator's per-user file goes to eval_<its name> (the training run's
  own stays as it was)."""
  state, meta = checkpoints.restore("best", state)
  out = {"best/step": meta["best_step"], **extra}
  for evaluate in evaluators:
    if getattr(evaluate, "per_user_path", None):
      folder, name = os.path.split(evaluate.per_user_path)
      evaluate = copy.copy(evaluate)
      evaluate.per_user_path = os.path.join(folder, "eval_" + name)
    out.update(evaluate(state.params))
  path = os.path.join(workdir, "eval.json")
  with disk_full_as_error(path):
    records.write_json(path, out)
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
  path = os.path.join(workdir, "metrics.json")
  with disk_full_as_error(path):
    records.write_json(path, out)
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
  text = "".join(kept).encode()
  records.write_atomic(path, lambda f: f.write(text))
