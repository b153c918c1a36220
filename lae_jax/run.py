"""Solve and evaluate one LAE-family model (mode 'train') or select its hyperparameters ('search').

Writes into the workdir:
  metrics.json   flat final metrics: "test/recall@20", "valid/ndcg@100", "time/solve_s", ...
  search.jsonl   (search mode) one line per grid point with its validation metrics
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import scipy.sparse as sp

from recsys_core import filters
from recsys_core import metrics as metrics_lib
from recsys_core import readers
from recsys_core import records
from recsys_core import splits
from recsys_core import train as train_lib
from recsys_core import unbiased_metrics
from recsys_core.dataset import DataError, EvalSet, Split
from lae_jax import closed_forms
from lae_jax import gfcf
from lae_jax import linalg
from lae_jax import solve
from lae_jax import sweep
from recsys_core.errors import ConfigError


MODELS = (*closed_forms.MODELS, "gfcf")   # the LAE family and the GF-CF baseline


def load_split(config: ml_collections.ConfigDict) -> Split:
  """The split the config asks for: read from files (presplit) or built from the interactions."""
  if config.protocol == "presplit":
    return readers.load_presplit(config.dataset, config.data_dir)[1]
  dataset = readers.load_dataset(config.dataset, config.data_dir)
  if config.min_rating > 0:
    dataset = filters.filter_rating(dataset, config.min_rating)
  dataset = filters.k_core(dataset, min_user=config.min_user_interactions, min_item=1)
  if config.protocol == "strong":
    return splits.strong_split(dataset, config.heldout_users, seed=config.seed,
                               fold_in_fraction=config.fold_in_fraction)
  if config.protocol == "weak":
    return splits.weak_split(dataset, test_fraction=config.test_fraction, seed=config.seed)
  raise ConfigError(f"config.protocol={config.protocol!r}: use 'strong', 'weak' or 'presplit'")


def item_statistics(config, item_counts: np.ndarray) -> dict:
  """What the metrics need of the training items: the head mask and the propensities (official
  RLAE code: both from the training matrix's column sums)."""
  return {"head_items": metrics_lib.head_item_mask(item_counts, config.head_fraction),
          "propensity": unbiased_metrics.propensity(item_counts, config.propensity_power,
                                                    config.propensity_floor)}


def _evaluate_b(config, b, eval_set: EvalSet, items: dict, name: str) -> dict:
  """Evaluates a fitted model: B of the LAE family, or a `gfcf.GFCF`."""
  scorer = gfcf.scorer if isinstance(b, gfcf.GFCF) else solve.scorer
  score_fn, params, batch_inputs = scorer(b, eval_set.fold_in)
  return _evaluate(config, score_fn, params, eval_set, items, name, batch_inputs)


def _evaluate(config, score_fn, params, eval_set: EvalSet, items: dict, name: str,
              batch_inputs=None) -> dict:
  """Recall/NDCG/Precision (all, head, tail) and the unbiased metrics; items: `item_statistics`."""
  result = metrics_lib.evaluate(score_fn, params, eval_set, config.ks,
                                normalization=config.recall_normalization, precision=True, **items,
                                batch_size=config.eval_batch_size, progress=config.progress, desc=name,
                                batch_inputs=batch_inputs, mesh=train_lib.make_mesh())
  return records.prefixed(name, result)


def gram_mesh(config) -> jax.sharding.Mesh | None:
  """The mesh over which the Gram matrix is accumulated, or None for the host (config.gram)."""
  if config.gram not in ("auto", "host", "mesh"):
    raise ConfigError(f"config.gram={config.gram!r}: use 'auto', 'host' or 'mesh'")
  on_mesh = config.gram == "mesh" or (config.gram == "auto" and (
      jax.process_count() > 1 or jax.default_backend() != "cpu"))
  return train_lib.make_mesh() if on_mesh else None


def _fit(config, train, lam, p, xi):
  if config.model == "gfcf":
    return gfcf.fit(train, alpha=config.alpha, num_vectors=config.gfcf_vectors,
                    dtype=np.dtype(config.dtype), seed=config.seed)
  return solve.fit(train, config.model, lam=lam, p=p, xi=xi, dtype=np.dtype(config.dtype),
                   method=config.solve_method, backend=config.inverse_backend or None,
                   mesh=gram_mesh(config))


def _ranks_training_users(config, split: Split) -> bool:
  """Weak generalization scores the training users themselves: with fewer users than items their
  scores come straight from the Woodbury factors (solve.fit_training_scores), B is never formed."""
  train, fold_in = split.train, split.test.fold_in
  return (config.model != "gfcf" and split.valid is None
          and config.solve_method in ("auto", "woodbury")
          and linalg.choose_method(train) == "woodbury" and fold_in.shape == train.shape
          and (fold_in != train).nnz == 0)


def fit_and_evaluate(config: ml_collections.ConfigDict, split: Split) -> dict[str, Any]:
  """Solve on split.train, evaluate test (and valid when it shares the training matrix)."""
  items = item_statistics(config, split.item_counts())
  if _ranks_training_users(config, split):
    scores, info = solve.fit_training_scores(split.train, config.model, lam=config.lam, p=config.p,
                                             xi=config.xi, dtype=np.dtype(config.dtype),
                                             backend=config.inverse_backend or None)
  else:
    b, info = _fit(config, split.train, config.lam, config.p, config.xi)
  logging.info("%s solved by %s/%s in %.1fs; %d of %d diagonal constraints active",
               config.model, info.method, info.backend, info.solve_s, info.num_active, split.num_items)
  start = time.perf_counter()
  if info.method == "woodbury-rows":
    out = _evaluate(config, solve.given_scores, (), split.test, items, "test",
                    batch_inputs=lambda begin, end: scores[begin:end])
  else:
    out = _evaluate_b(config, b, split.test, items, "test")
  eval_s = time.perf_counter() - start
  if split.valid is not None and split.valid_train is None:
    out.update(_evaluate_b(config, b, split.valid, items, "valid"))
  out.update({"time/solve_s": info.solve_s, "time/eval_s": eval_s, "solve/num_active": info.num_active,
              "solve/method": info.method, "solve/backend": info.backend,
              **_hparams(config)})
  return out


def _hparams(config) -> dict:
  if config.model == "gfcf":
    return {"hparams/alpha": config.alpha, "hparams/gfcf_vectors": config.gfcf_vectors}
  return {"hparams/lam": config.lam, "hparams/p": config.p,
          "hparams/xi": closed_forms.effective_xi(config.model, config.xi)}


def _grid(config) -> dict[str, tuple]:
  """The search axes of config.model: lam, then p (dropout models), then xi (relaxed models); an
  empty config.search tuple keeps the config's own value."""
  spec = closed_forms.model_spec(config.model)
  axes = {"lam": tuple(config.search.lam) or (config.lam,)}
  if spec.dropout:
    axes["p"] = tuple(config.search.p) or (config.p,)
  if spec.diag_bound == "relaxed":
    axes["xi"] = tuple(config.search.xi) or (config.xi,)
  return axes


def _search_eigen(config, train, valid, items, axes):
  """LAE / EASE: every lambda from one eigendecomposition of G (sweep.eigen_gram); yields
  (point, number of active constraints, valid metrics) per lambda."""
  eigen = sweep.eigen_gram(train, np.dtype(config.dtype))
  xi = closed_forms.effective_xi(config.model, config.xi)
  for lam in axes["lam"]:
    params, active = sweep.sweep_params(eigen, lam, xi)
    yield ({"lam": lam}, int(active),
           _evaluate(config, sweep.sweep_scores, params, valid, items, "valid"))


def _search_inverse(config, train, valid, items, axes):
  """One inverse C = (G + diagMat(gamma))^-1 per (lambda, p); every xi of the grid from it
  (sweep.xi_curve: only the column scale gamma + mu(xi) depends on xi). Yields (point, number of
  active constraints, valid metrics) per grid point."""
  for lam, p in itertools.product(axes["lam"], axes.get("p", (config.p,))):
    # One (lambda, p) at a time, so that its C is freed before the next inverse is allocated.
    yield from _xi_grid(config, train, valid, items, axes, lam, p)


def _xi_grid(config, train, valid, items, axes, lam, p) -> list:
  xis = axes.get("xi", (closed_forms.effective_xi(config.model, config.xi),))
  c, gamma = sweep.xi_inverse(train, config.model, lam=lam, p=p, dtype=np.dtype(config.dtype),
                              method=config.solve_method, backend=config.inverse_backend or None,
                              mesh=gram_mesh(config))
  host_c = np.asarray(c)
  rows = sp.csr_matrix(valid.fold_in, dtype=host_c.dtype)
  curve = sweep.xi_curve(np.diagonal(host_c), gamma, xis)
  out = []
  for xi, scale, active in zip(curve.xis, curve.scales, curve.num_active):
    inputs = lambda a, b, s=scale: sweep.xi_scores(rows[a:b].toarray(), rows[a:b] @ host_c, s)
    point = {"lam": lam, **({"p": p} if "p" in axes else {}), **({"xi": xi} if "xi" in axes else {})}
    out.append((point, int(active), _evaluate(config, solve.given_scores, (), valid, items, "valid",
                                              batch_inputs=inputs)))
  return out


def search(config: ml_collections.ConfigDict, split: Split, workdir: str) -> tuple[dict, dict]:
  """Grid search on the validation set: (the best point's hyperparameters, search statistics).

  LAE and EASE with at most config.search.eigen_max_items items sweep lambda from one
  eigendecomposition; every other case solves one inverse per (lambda, p) and scores the whole xi
  grid from it, so a relaxed model costs no more inverses than its unrelaxed one.
  """
  if config.model == "gfcf":
    raise ConfigError("config.model='gfcf' has no search grid; use --mode=train with "
                      "--config.alpha / --config.gfcf_vectors")
  if split.valid is None:
    raise DataError(f"dataset {config.dataset!r} has no validation split to search on; "
                    "use --mode=train with fixed hyperparameters")
  start = time.perf_counter()
  train = split.valid_train if split.valid_train is not None else split.train
  items = item_statistics(config, np.asarray(train.sum(axis=0)).ravel())
  axes = _grid(config)
  spec = closed_forms.model_spec(config.model)
  eigen = spec.diag_bound != "relaxed" and not spec.dropout and (
      train.shape[1] <= config.search.eigen_max_items)
  points = (_search_eigen if eigen else _search_inverse)(config, train, split.valid, items, axes)
  results = []
  for point, active, valid in points:
    records.append_jsonl(os.path.join(workdir, "search.jsonl"),
                         {**point, "num_active": active, **valid})
    logging.info("search %s: %s = %.5f", point, config.search.metric, valid[config.search.metric])
    results.append((valid[config.search.metric], point))
  best_value, best = max(results, key=lambda r: r[0])
  logging.info("selected %s (%s = %.5f)", best, config.search.metric, best_value)
  solves = 1 if eigen else len(axes["lam"]) * len(axes.get("p", (0,)))
  return best, {"time/search_s": time.perf_counter() - start, "search/points": len(results),
                "search/solves": solves, "search/route": "eigen" if eigen else "inverse"}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict:
  if mode == "eval":
    raise ConfigError("the LAE family has no checkpoint to evaluate: its solve is the training; "
                     "use --mode=train (or --mode=search)")
  if config.model not in MODELS:
    raise ConfigError(f"config.model={config.model!r}: choose one of {sorted(MODELS)}")
  start = time.perf_counter()
  split = load_split(config)
  load_s = time.perf_counter() - start
  logging.info("split: %d training users, %d items, %d test users", split.train.shape[0], split.num_items,
               split.test.num_users)
  search_stats = {}
  if mode == "search":
    selected, search_stats = search(config, split, workdir)
    config = ml_collections.ConfigDict(config.to_dict())
    config.update(selected)
  out = fit_and_evaluate(config, split)
  out.update(search_stats)
  out.update({"time/load_s": load_s, "memory/peak_rss_gb": records.peak_rss_gb(),
              "data/train_users": split.train.shape[0], "data/items": split.num_items,
              "data/test_users": split.test.num_users})
  records.write_json(os.path.join(workdir, "metrics.json"), out)
  return out
