"""Full-ranking metrics: Recall@k and NDCG@k, over all items and on head/tail items.

Protocol (one for the whole project):
- Every item is ranked except the user's fold-in items, whose scores are set to -inf. Ties are
  broken by the lower item id (what `jax.lax.top_k` does, and a stable argsort of -scores).
- Relevance is binary: an item is relevant iff it is in the user's target row. Ranks are 1-based.
- Recall@k = hits@k / min(k, |T|) for normalization "min" (VAE-CF / strong generalization, RLAE
  paper) or hits@k / |T| for "size" (LightGCN weak generalization).
- NDCG@k = DCG@k / IDCG@k with DCG@k = sum_{r<=k} rel_r / log2(r + 1) and IDCG@k the same sum over
  the first min(k, |T|) ranks (the same for both normalizations).
- Precision@k = hits@k / k (optional, `precision=True`; the official RLAE code reports it).
- Unbiased uRecall@k / uPrecision@k / uNDCG@k (optional, given item propensities): see
  `recsys_core/unbiased_metrics.py`, computed over all items only, as the official code does.
- Head/tail: the ranking stays over all items (minus fold-in); only the ground truth is restricted,
  T_head = T ∩ head, T_tail = T \\ head, and |T| above is the restricted size. A user counts in a
  group's average iff that group's T is non-empty; users with an empty T are skipped everywhere.

Top-k ids come from the accelerator (`masked_top_k`, one jitted call per batch of users); the
metrics are computed on the host in numpy from those ids and the CSR target rows
(`ranking_metrics`).
An id < 0 in a top-k list is an empty slot (no item), never a hit.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import tqdm

from recsys_core import evaluation
from recsys_core import unbiased_metrics
from recsys_core.dataset import EvalSet
from recsys_core.errors import DivergenceError

NORMALIZATIONS = ("min", "size")
GROUPS = ("head", "tail")


def head_item_mask(item_counts: np.ndarray, fraction: float = 0.2) -> np.ndarray:
  """Boolean [num_items] mask of the head items, chosen by the official RLAE/RDLAE rule.

  The official code (RDLAE_SIGIR2023, strong/ and weak/ code/Procedure.py, `Test`) takes
  `np.argsort(item_counts)[::-1][:math.ceil(num_items * 0.2)]`, where item_counts are the column
  sums of the training matrix `UserItemNet` (train.txt: the training users only in the strong
  protocol), a float64 array. We apply that rule as written: numpy's default (unstable) argsort of
  the float64 counts, reversed. Among items of equal count at the boundary the choice is therefore
  numpy's, not the lower item id (on gowalla strong 585 items share the boundary count 22, and a
  stable sort on -counts picks 300 different head items).

  Args:
    item_counts: [num_items] training interaction counts (any real dtype), e.g.
      `Split.item_counts()`.
    fraction: share of items that are "head" (the RLAE paper uses the top 20%).

  Returns:
    [num_items] bool, True for the math.ceil(fraction * num_items) head items.
  """
  counts = np.asarray(item_counts)
  if counts.ndim != 1:
    raise ValueError(f"item_counts must be 1-D, got shape {counts.shape}")
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be in [0, 1], got {fraction}")
  num_head = math.ceil(fraction * counts.shape[0])  # the official float product, rounded up
  order = np.argsort(counts.astype(np.float64))[::-1]
  mask = np.zeros(counts.shape[0], dtype=bool)
  mask[order[:num_head]] = True
  return mask


@functools.partial(jax.jit, static_argnames="k")
def masked_top_k(scores: jax.Array, exclude: jax.Array, k: int) -> jax.Array:
  """The k best items per row, never an excluded one.

  Args:
    scores: [b, n] float scores.
    exclude: [b, n] bool, True for items that must not be ranked (fold-in items).
    k: static number of items to return, k <= n.

  Returns:
    [b, k] int32 item ids in decreasing score order, ties broken by the lower id. A row with fewer
    than k allowed items is padded with -1.
  """
  exclude = exclude.astype(bool)
  masked = jnp.where(exclude, jnp.array(-jnp.inf, scores.dtype), scores)
  _, top = jax.lax.top_k(masked, k)
  # top_k fills a short row with -inf entries, i.e. excluded items: blank them so they cannot hit.
  return jnp.where(jnp.take_along_axis(exclude, top, axis=1), -1, top)


def target_hits(top_items: np.ndarray, target: sp.spmatrix) -> np.ndarray:
  """hits[u, r] = top_items[u, r] is in target row u.

  Args:
    top_items: [b, K] int item ids (< 0 = empty slot).
    target: [b, n] binary sparse matrix; every stored non-zero is a relevant item.

  Returns:
    [b, K] bool.
  """
  target = _canonical_csr(target)
  top_items = np.asarray(top_items)
  num_users, num_items = target.shape
  if target.nnz == 0:
    return np.zeros(top_items.shape, dtype=bool)
  # (row, item) -> row * n + item is sorted for a canonical CSR, so membership is one searchsorted.
  rows = np.repeat(np.arange(num_users, dtype=np.int64), np.diff(target.indptr))
  keys = rows * num_items + target.indices
  query = np.arange(num_users, dtype=np.int64)[:, None] * num_items + top_items
  pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
  return (keys[pos] == query) & (top_items >= 0)


def ranking_metrics(
    top_items: np.ndarray,
    target: sp.spmatrix,
    ks: Sequence[int],
    normalization: str = "min",
    item_mask: Optional[np.ndarray] = None,
    precision: bool = False,
) -> Dict[str, np.ndarray]:
  """Per-user Recall@k and NDCG@k (and Precision@k) from top-K lists.

  Args:
    top_items: [b, K] int distinct item ids per user, best first, K >= max(ks); ids < 0 are empty
      slots.
    target: [b, n] binary sparse matrix of relevant items.
    ks: cut-offs.
    normalization: "min" (Recall / min(k, |T|)) or "size" (Recall / |T|).
    item_mask: optional [n] bool; restricts the ground truth to T ∩ item_mask (head or tail).
    precision: also return "precision@k" = hits@k / k.

  Returns:
    {"recall@k": [b] float64, "ndcg@k": [b] float64[, "precision@k"]} for each k; NaN for users
    whose (restricted) target is empty.
  """
  ks = _check_ks(ks)
  _check_normalization(normalization)
  target = _canonical_csr(target)
  top_items = np.asarray(top_items)
  num_users, num_items = target.shape
  if top_items.ndim != 2 or top_items.shape[0] != num_users or top_items.shape[1] < max(ks):
    raise ValueError(
        f"top_items must be [{num_users}, >= {max(ks)}], got {top_items.shape}")
  hits = target_hits(top_items, target)
  if item_mask is None:
    sizes = np.diff(target.indptr)
  else:
    item_mask = _check_item_mask(item_mask, num_items)
    hits &= item_mask[np.maximum(top_items, 0)]
    rows = np.repeat(np.arange(num_users), np.diff(target.indptr))
    sizes = np.bincount(rows, weights=item_mask[target.indices], minlength=num_users)
    sizes = sizes.astype(np.int64)
  return _metrics_from_hits(hits, sizes, ks, normalization, precision)


def grouped_ranking_metrics(
    top_items: np.ndarray,
    target: sp.spmatrix,
    ks: Sequence[int],
    normalization: str = "min",
    head_items: Optional[np.ndarray] = None,
    precision: bool = False,
) -> Dict[str, np.ndarray]:
  """`ranking_metrics` over all items, plus "head_"/"tail_"-prefixed keys when head_items is given.

  Args:
    head_items: optional [n] bool head mask (see `head_item_mask`); tail is its complement.
    (others as in `ranking_metrics`)

  Returns:
    name -> [b] float64 per-user values, NaN where a user does not count.
  """
  out = ranking_metrics(top_items, target, ks, normalization, precision=precision)
  if head_items is not None:
    head_items = _check_item_mask(head_items, target.shape[1])
    for group, mask in zip(GROUPS, (head_items, ~head_items)):
      group_metrics = ranking_metrics(top_items, target, ks, normalization, item_mask=mask,
                                      precision=precision)
      out.update({f"{group}_{name}": value for name, value in group_metrics.items()})
  return out


def mean_over_users(per_user: Dict[str, np.ndarray]) -> Dict[str, float]:
  """Means over the users that count (non-NaN), plus `num_users` (and `head_/tail_num_users`).

  Args:
    per_user: name -> [num_users] float per-user values as from `grouped_ranking_metrics`.

  Returns:
    name -> float mean (NaN when no user counts); "num_users" etc. are ints.
  """
  out = {}
  num_users = {}
  for name, values in per_user.items():
    valid = ~np.isnan(values)
    out[name] = float(values[valid].mean()) if valid.any() else float("nan")
    prefix = name.split("_")[0] + "_" if name.split("_")[0] in GROUPS else ""
    num_users.setdefault(prefix, int(valid.sum()))
  out.update({f"{prefix}num_users": count for prefix, count in num_users.items()})
  return out


def evaluate(*args, **kwargs) -> Dict[str, float]:
  """Full-ranking Recall@k / NDCG@k averaged over users: `mean_over_users` of
  `evaluate_per_user(*args, **kwargs)` (same arguments).

  Returns:
    {"recall@k", "ndcg@k"[, "head_recall@k", "tail_recall@k", "head_ndcg@k", "tail_ndcg@k"]
     [, "precision@k" (and head_/tail_)][, "urecall@k", "uprecision@k", "undcg@k"]: float,
     "num_users"[, "head_num_users", "tail_num_users"]: int} -- means over users with a non-empty
    (group) target; num_users counts them.
  """
  return mean_over_users(evaluate_per_user(*args, **kwargs))


def evaluate_per_user(
    score_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    eval_set: EvalSet,
    ks: Sequence[int],
    *,
    normalization: str = "min",
    head_items: Optional[np.ndarray] = None,
    precision: bool = False,
    propensity: Optional[np.ndarray] = None,
    batch_size: int = 1000,
    progress: bool = True,
    desc: str = "eval",
    batch_inputs: Optional[Callable[[int, int], Any]] = None,
    mesh: Optional[jax.sharding.Mesh] = None,
) -> Dict[str, np.ndarray]:
  """Per-user full-ranking Recall@k / NDCG@k of a scoring model on an evaluation set.

  Users go through in batches: the batch's fold-in rows are densified (float32 [batch_size, n], the
  last batch zero-padded so there is one compilation), `score_fn(params, fold_in)` scores all items
  and `masked_top_k` keeps the max(ks) best non-fold-in items, in one jitted call. At most one batch
  of scores exists at a time; the metrics of a batch are computed on the host while the device
  scores the next one.

  Args:
    score_fn: (params, fold_in [b, n] float32) -> scores [b, n]; jit-traceable, hashable (it is a
      static argument: reuse the same function object to reuse the compilation). E.g. for a linear
      autoencoder `lambda B, x: x @ B`.
    params: pytree passed to score_fn as a traced argument (never baked in as a constant); put on
      the device once here.
    eval_set: fold-in and target rows, [num_users, n] CSR each.
    ks: cut-offs, each <= n.
    normalization: Recall normalization, "min" or "size".
    head_items: optional [n] bool head mask; adds head_/tail_ metrics.
    precision: adds "precision@k" (and head_/tail_ ones).
    propensity: optional [n] item propensities (`unbiased_metrics.propensity`); adds "urecall@k",
      "uprecision@k", "undcg@k", whose denominators take each user's first min(k, |T|) target
      items in `eval_set.target_order` (ascending item id when it is None).
    batch_size: users per device call.
    progress: show a tqdm bar.
    desc: the bar's label.
    batch_inputs: optional (start, stop) -> pytree of per-user inputs with leading axis stop - start
      (e.g. item sequences, or rows of a precomputed score matrix); when given, score_fn is called as
      score_fn(params, fold_in, inputs) with inputs zero-padded to batch_size rows.
    mesh: optional ('data',) mesh (recsys_core.train.make_mesh): params are replicated on it and each
      batch of users is split over its devices (batch_size rounded up to a multiple of its size).
      Every process passes the same arguments; each puts only its own devices' rows. Without a
      mesh everything runs on the default device.

  Returns:
    {"recall@k", "ndcg@k"[, "head_recall@k", ...]: [num_users] float64} in the eval set's user
    order, NaN where a user's (group) target is empty (see `grouped_ranking_metrics`).
  """
  ks = _check_ks(ks)
  _check_normalization(normalization)
  fold_in, target = sp.csr_matrix(eval_set.fold_in), _canonical_csr(eval_set.target)
  num_users, num_items = fold_in.shape
  if target.shape != fold_in.shape:
    raise ValueError(f"fold_in {fold_in.shape} and target {target.shape} shapes differ")
  if max(ks) > num_items:
    raise ValueError(f"max(ks)={max(ks)} exceeds the number of items {num_items}")
  if num_users == 0:
    raise ValueError("the evaluation set has no users")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if head_items is not None:
    head_items = _check_item_mask(head_items, num_items)
  if propensity is not None:
    inverse_propensity = 1.0 / _check_propensity(propensity, num_items)
    ordered_targets = _target_order(eval_set, target)
  batch_size = evaluation.round_to_mesh(min(batch_size, num_users), mesh)

  def batches():
    for start in range(0, num_users, batch_size):
      stop = min(start + batch_size, num_users)
      inputs = None if batch_inputs is None else _pad_rows(batch_inputs(start, stop), batch_size)
      yield (start, stop), (_dense_rows(fold_in, start, stop, batch_size),
                            np.arange(batch_size) < stop - start, inputs)

  def scored_top_k(params, fold_in_rows, real_rows, inputs):
    return _scored_top_k(params, fold_in_rows, real_rows, inputs, score_fn=score_fn, k=max(ks))

  per_user = []
  with tqdm.tqdm(total=num_users, desc=desc, unit="user", disable=not progress) as bar:
    for (start, stop), (top, num_nan) in evaluation.pipelined(scored_top_k, params, batches(),
                                                              mesh):
      if int(num_nan) > 0:
        raise DivergenceError(f"score_fn returned {int(num_nan)} NaN scores for users {start}:{stop}")
      top, rows = top[:stop - start], target[start:stop]
      batch = grouped_ranking_metrics(top, rows, ks, normalization, head_items, precision)
      if propensity is not None:
        begin, end = target.indptr[start], target.indptr[stop]
        batch.update(unbiased_metrics.unbiased_ranking_metrics(
            top, target_hits(top, rows), ordered_targets[begin:end],
            target.indptr[start:stop + 1] - begin, inverse_propensity, ks))
      per_user.append(batch)
      bar.update(stop - start)
  return {name: np.concatenate([p[name] for p in per_user]) for name in per_user[0]}


def paired_difference(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
  """Mean of a - b over the users where both are defined, with its standard error.

  Two models evaluated on the same users: the paired standard error (std of the per-user
  differences / sqrt(n)) is much smaller than either mean's own, since the users' difficulty cancels.

  Args:
    a, b: [num_users] per-user values of one metric (as from `evaluate_per_user`), NaN = skipped.

  Returns:
    {"mean": mean difference, "se": its standard error (NaN for n < 2), "n": users counted}.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"per-user arrays must be 1-D of one shape, got {a.shape} and {b.shape}")
  diff = (a - b)[~(np.isnan(a) | np.isnan(b))]
  if not len(diff):
    raise ValueError("no user has both values")
  se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
  return {"mean": float(diff.mean()), "se": se, "n": len(diff)}


@functools.partial(jax.jit, static_argnames=("score_fn", "k"))
def _scored_top_k(params, fold_in, real_rows, inputs, *, score_fn, k):
  """[b, k] int32 top ids and the number of NaN scores in the real ([b] bool) rows."""
  scores = score_fn(params, fold_in) if inputs is None else score_fn(params, fold_in, inputs)
  # lax.top_k ranks NaN above everything: count them so a broken model fails loudly.
  return masked_top_k(scores, fold_in > 0, k), jnp.sum(jnp.isnan(scores) & real_rows[:, None])


def _pad_rows(tree: Any, num_rows: int) -> Any:
  """Zero-pad every leaf of a pytree along axis 0 to num_rows."""
  def pad(leaf):
    leaf = np.asarray(leaf)
    widths = [(0, num_rows - leaf.shape[0])] + [(0, 0)] * (leaf.ndim - 1)
    return np.pad(leaf, widths)
  return jax.tree.map(pad, tree)


def _dense_rows(matrix: sp.csr_matrix, start: int, stop: int, num_rows: int) -> np.ndarray:
  """Rows start:stop of a CSR matrix as float32 [num_rows, n], zero-padded at the bottom."""
  out = np.zeros((num_rows, matrix.shape[1]), dtype=np.float32)
  out[:stop - start] = matrix[start:stop].toarray()
  return out


def _metrics_from_hits(hits, sizes, ks, normalization, precision=False):
  """Per-user metrics from [b, K] bool hits and [b] int (restricted) target sizes."""
  discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2, dtype=np.float64))
  num_hits = np.cumsum(hits, axis=1)
  dcg = np.cumsum(hits * discounts, axis=1)
  ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal_dcg[m]: m relevant items on top
  valid = sizes > 0
  out = {}
  with np.errstate(divide="ignore", invalid="ignore"):
    for k in ks:
      denominator = np.minimum(sizes, k) if normalization == "min" else sizes
      out[f"recall@{k}"] = np.where(valid, num_hits[:, k - 1] / denominator, np.nan)
    for k in ks:
      out[f"ndcg@{k}"] = np.where(valid, dcg[:, k - 1] / ideal_dcg[np.minimum(sizes, k)], np.nan)
    for k in ks if precision else ():
      out[f"precision@{k}"] = np.where(valid, num_hits[:, k - 1] / k, np.nan)
  return out


def _canonical_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
  """CSR with sorted, unique, explicitly non-zero entries (copied only when needed)."""
  matrix = sp.csr_matrix(matrix)
  if not matrix.has_canonical_format or (matrix.data == 0).any():
    matrix = matrix.copy()
    matrix.eliminate_zeros()
    matrix.sum_duplicates()
  return matrix


def _check_ks(ks: Sequence[int]) -> tuple:
  ks = tuple(dict.fromkeys(int(k) for k in ks))
  if not ks or min(ks) < 1:
    raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
  return ks


def _check_normalization(normalization: str) -> None:
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _check_propensity(propensity: np.ndarray, num_items: int) -> np.ndarray:
  propensity = np.asarray(propensity, np.float64)
  if propensity.shape != (num_items,) or not (propensity > 0).all():
    raise ValueError(f"propensity must be positive [{num_items}], got shape {propensity.shape}")
  return propensity


def _target_order(eval_set: EvalSet, target: sp.csr_matrix) -> np.ndarray:
  """[nnz] the target items row after row in the eval set's order (ascending id without one)."""
  order = getattr(eval_set, "target_order", None)
  if order is None:
    return target.indices
  order = np.asarray(order)
  rows = np.repeat(np.arange(target.shape[0], dtype=np.int64), np.diff(target.indptr))
  if order.shape != target.indices.shape or not np.array_equal(
      np.sort(rows * target.shape[1] + order), rows * target.shape[1] + target.indices):
    raise ValueError("eval_set.target_order must list each target row's items (a permutation of "
                     "the row's indices), row after row")
  return order


def _check_item_mask(mask: np.ndarray, num_items: int) -> np.ndarray:
  mask = np.asarray(mask)
  if mask.dtype != bool or mask.shape != (num_items,):
    raise ValueError(f"item mask must be bool [{num_items}], got {mask.dtype} {mask.shape}")
  return mask
