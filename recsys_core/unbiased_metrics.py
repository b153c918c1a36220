"""Propensity-weighted ("unbiased") uRecall@k, uPrecision@k and uNDCG@k of the RLAE/RDLAE paper.

Definitions exactly as the official code computes them (RDLAE_SIGIR2023, strong/code/main.py and
strong/code/utils.py `uRecPrecatK_r` / `uNDCGatK_r`):

- Propensity of item j: p_j = max((c_j / max_i c_i) ** 0.5, 0.01), with c_j the item's count in
  the training matrix (`UserItemNet`, the training users of the strong split). The official floor
  is written `10e-3`, i.e. 0.01.
- For a user with ranked top-k list r_1..r_k, hits h_r and test items T **in file order**:
    denominator D_k = sum of 1 / p_t over the FIRST min(k, |T|) items t of T in file order
      (not the least popular ones, not the hit ones: the official loop takes `items[j]`,
      j < min(k, |T|), of the user's test list as read from test.txt);
    uRecall@k    = sum_{r<=k} h_r / p_{r}  /  D_k                      (may exceed 1)
    uPrecision@k = sum_{r<=k} h_r / p_{r}  /  sum_{r<=k} 1 / p_{r}     (over the recommended items)
    uNDCG@k      = [sum_{r<=k} h_r / (p_{r} log2(r + 1)) / D_k]  /  IDCG@k,
      with IDCG@k = sum_{r <= min(k, |T|)} 1 / log2(r + 1), the binary ideal DCG (not weighted).
- Users are averaged with equal weight; users with no test item are skipped (NaN per user).

The order of a user's test items therefore changes D_k when |T| > k: `EvalSet.target_order`
carries the file order (presplit folders); without it the ascending item-id order is used.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

OFFICIAL_POWER = 0.5     # p_j = (c_j / max c) ** 0.5
OFFICIAL_FLOOR = 0.01    # the official `10e-3`


def propensity(item_counts: np.ndarray, power: float = OFFICIAL_POWER,
               floor: float = OFFICIAL_FLOOR) -> np.ndarray:
  """[n] float64 p_j = max((c_j / max c) ** power, floor) from [n] training counts c."""
  counts = np.asarray(item_counts, np.float64)
  if counts.ndim != 1 or not len(counts) or counts.max() <= 0:
    raise ValueError(f"item_counts must be 1-D with a positive maximum, got shape {counts.shape}")
  if not 0.0 < floor <= 1.0:
    raise ValueError(f"the propensity floor must be in (0, 1], got {floor}")
  return np.maximum((counts / counts.max()) ** power, floor)


def unbiased_ranking_metrics(top_items: np.ndarray, hits: np.ndarray, ordered_targets: np.ndarray,
                             indptr: np.ndarray, inverse_propensity: np.ndarray,
                             ks: Sequence[int]) -> Dict[str, np.ndarray]:
  """Per-user uRecall@k, uPrecision@k, uNDCG@k.

  Args:
    top_items: [b, K] int ranked item ids, K >= max(ks); ids < 0 are empty slots (weight 0).
    hits: [b, K] bool, top_items[u, r] is a test item of user u.
    ordered_targets: [nnz] int test items, user after user, each user's in file order.
    indptr: [b + 1] user u's test items are ordered_targets[indptr[u]:indptr[u + 1]].
    inverse_propensity: [n] float64 1 / p_j (see `propensity`).
    ks: cut-offs.

  Returns:
    {"urecall@k", "uprecision@k", "undcg@k": [b] float64}; NaN for users without test items.
  """
  top_items, hits = np.asarray(top_items), np.asarray(hits, bool)
  indptr = np.asarray(indptr, np.int64)
  sizes = np.diff(indptr)
  weights = np.where(top_items >= 0, inverse_propensity[np.maximum(top_items, 0)], 0.0)
  discounts = 1.0 / np.log2(np.arange(2, top_items.shape[1] + 2, dtype=np.float64))
  hit_weight = np.cumsum(hits * weights, axis=1)
  list_weight = np.cumsum(weights, axis=1)
  hit_dcg = np.cumsum(hits * weights * discounts, axis=1)
  ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])
  # D_k from running sums over each user's test items in order: cum[start + m] - cum[start].
  cum = np.concatenate([[0.0], np.cumsum(inverse_propensity[np.asarray(ordered_targets)])])
  valid = sizes > 0
  out = {}
  with np.errstate(divide="ignore", invalid="ignore"):
    for k in ks:
      m = np.minimum(sizes, k)
      first = cum[indptr[:-1] + m] - cum[indptr[:-1]]
      out[f"urecall@{k}"] = np.where(valid, hit_weight[:, k - 1] / first, np.nan)
      out[f"uprecision@{k}"] = np.where(valid, hit_weight[:, k - 1] / list_weight[:, k - 1], np.nan)
      out[f"undcg@{k}"] = np.where(valid, hit_dcg[:, k - 1] / first / ideal_dcg[m], np.nan)
  return out
