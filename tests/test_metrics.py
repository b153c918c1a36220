"""Tests of recsys_core/metrics.py: hand-computed cases, and `evaluate` against a dense numpy reference."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recsys_core import metrics
from recsys_core.dataset import EvalSet

# 1 / log2(r + 1) for ranks r = 1, 2, 3.
D1, D2, D3 = 1.0, 0.6309297535714575, 0.5


def _csr(rows, num_items):
  """Binary float32 CSR from a list of item-id lists."""
  dense = np.zeros((len(rows), num_items), np.float32)
  for u, items in enumerate(rows):
    dense[u, list(items)] = 1.0
  return sp.csr_matrix(dense)


# The hand case: 3 users, 6 items, ks = (1, 3).
#   user A: top [3, 1, 0], target {1, 3, 4, 5} (|T| = 4 > k)  -> hits [1, 1, 0]
#   user B: top [0, 2, 5], target {2, 5}       (|T| = 2 < k=3) -> hits [0, 1, 1]
#   user C: top [0, 1, 2], target {}                           -> skipped
HAND_TOP = np.array([[3, 1, 0], [0, 2, 5], [0, 1, 2]])
HAND_TARGET = [{1, 3, 4, 5}, {2, 5}, set()]
# Fold-in rows and scores whose masked top-3 is HAND_TOP (excluded items score highest).
HAND_FOLD_IN = [{2}, {1, 3}, {4}]
HAND_SCORES = np.array([
    [0.5, 0.6, 0.9, 0.8, 0.1, 0.2],
    [0.9, 0.95, 0.7, 0.99, 0.1, 0.6],
    [0.6, 0.5, 0.4, 0.3, 0.9, 0.1],
], np.float32)
# Head = items {0, 1}: A's head target {1} (hits [0,1,0]), tail {3,4,5} (hits [1,0,0]);
# B has no head target (excluded from the head average), tail {2, 5} (hits [0,1,1]).
HAND_HEAD = np.array([True, True, False, False, False, False])

# Per-user expected values, derived by hand from the hits above.
NDCG3_A = (D1 + D2) / (D1 + D2 + D3)  # IDCG over min(3, 4) = 3 ranks
NDCG3_B = (D2 + D3) / (D1 + D2)  # IDCG over min(3, 2) = 2 ranks
assert math.isclose(NDCG3_A, 0.7653606369886217)
assert math.isclose(NDCG3_B, 0.6934264036172708)

HAND_PER_USER = {
    "min": {
        "recall@1": [1.0, 0.0, np.nan],  # A: 1 / min(1, 4)
        "recall@3": [2 / 3, 1.0, np.nan],  # A: 2 / min(3, 4); B: 2 / min(3, 2)
        "ndcg@1": [1.0, 0.0, np.nan],
        "ndcg@3": [0.7653606369886217, 0.6934264036172708, np.nan],
    },
    "size": {
        "recall@1": [0.25, 0.0, np.nan],  # A: 1 / 4
        "recall@3": [0.5, 1.0, np.nan],  # A: 2 / 4; B: 2 / 2
        "ndcg@1": [1.0, 0.0, np.nan],
        "ndcg@3": [0.7653606369886217, 0.6934264036172708, np.nan],
    },
}
HAND_MEANS = {
    "min": {"recall@1": 0.5, "recall@3": 0.8333333333333334, "ndcg@1": 0.5,
            "ndcg@3": 0.7293935203029462, "num_users": 2},
    "size": {"recall@1": 0.125, "recall@3": 0.75, "ndcg@1": 0.5,
             "ndcg@3": 0.7293935203029462, "num_users": 2},
}
HAND_GROUP_MEANS = {
    "min": {
        # head: user A only.
        "head_recall@1": 0.0, "head_recall@3": 1.0,  # 1 / min(3, 1)
        "head_ndcg@1": 0.0, "head_ndcg@3": 0.6309297535714575,  # D2 / D1
        # tail: A (|T_tail| = 3) and B.
        "tail_recall@1": 0.5,  # (1 / min(1, 3) + 0) / 2
        "tail_recall@3": 0.6666666666666666,  # (1/3 + 2/2) / 2
        "tail_ndcg@1": 0.5,
        "tail_ndcg@3": 0.5813525648200136,  # (D1 / (D1+D2+D3) + NDCG3_B) / 2
        "head_num_users": 1, "tail_num_users": 2,
    },
    "size": {
        "head_recall@1": 0.0, "head_recall@3": 1.0,
        "head_ndcg@1": 0.0, "head_ndcg@3": 0.6309297535714575,
        "tail_recall@1": 0.16666666666666666,  # (1/3 + 0) / 2: by |T ∩ tail| = 3, not 4
        "tail_recall@3": 0.6666666666666666,
        "tail_ndcg@1": 0.5,
        "tail_ndcg@3": 0.5813525648200136,
        "head_num_users": 1, "tail_num_users": 2,
    },
}


def _assert_dict_close(actual, expected):
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("normalization", ["min", "size"])
def test_ranking_metrics_hand_case(normalization):
  per_user = metrics.ranking_metrics(HAND_TOP, _csr(HAND_TARGET, 6), (1, 3), normalization)
  assert set(per_user) == {"recall@1", "recall@3", "ndcg@1", "ndcg@3"}
  _assert_dict_close(per_user, HAND_PER_USER[normalization])


@pytest.mark.parametrize("normalization", ["min", "size"])
def test_grouped_hand_case(normalization):
  per_user = metrics.grouped_ranking_metrics(
      HAND_TOP, _csr(HAND_TARGET, 6), (1, 3), normalization, head_items=HAND_HEAD)
  assert np.isnan(per_user["head_recall@3"][1])  # B has no head item
  assert not np.isnan(per_user["tail_recall@3"][1])
  means = metrics.mean_over_users(per_user)
  _assert_dict_close(means, HAND_MEANS[normalization])
  _assert_dict_close(means, HAND_GROUP_MEANS[normalization])


@pytest.mark.parametrize("normalization", ["min", "size"])
def test_evaluate_hand_case(normalization):
  eval_set = EvalSet(fold_in=_csr(HAND_FOLD_IN, 6), target=_csr(HAND_TARGET, 6))
  result = metrics.evaluate(
      lambda scores, x: scores[:x.shape[0]], jnp.asarray(HAND_SCORES), eval_set, (1, 3),
      normalization=normalization, head_items=HAND_HEAD, progress=False)
  expected = {**HAND_MEANS[normalization], **HAND_GROUP_MEANS[normalization]}
  assert set(result) == set(expected)
  _assert_dict_close(result, expected)


def test_evaluate_per_user_hand_case():
  eval_set = EvalSet(fold_in=_csr(HAND_FOLD_IN, 6), target=_csr(HAND_TARGET, 6))
  per_user = metrics.evaluate_per_user(
      lambda scores, x: scores[:x.shape[0]], jnp.asarray(HAND_SCORES), eval_set, (1, 3),
      progress=False)
  assert set(per_user) == {"recall@1", "recall@3", "ndcg@1", "ndcg@3"}
  _assert_dict_close(per_user, HAND_PER_USER["min"])


def test_paired_difference_hand_case():
  a = np.array([1.0, 0.0, 0.5, np.nan, 1.0])
  b = np.array([0.0, 0.0, 1.0, 1.0, np.nan])
  out = metrics.paired_difference(a, b)  # users 0..2: differences 1, 0, -.5
  assert out["n"] == 3
  assert out["mean"] == pytest.approx(1 / 6)
  assert out["se"] == pytest.approx(np.sqrt(((5 / 6) ** 2 + (1 / 6) ** 2 + (4 / 6) ** 2) / 2 / 3))
  assert np.isnan(metrics.paired_difference(a[:1], b[:1])["se"])
  with pytest.raises(ValueError, match="no user"):
    metrics.paired_difference(a[3:], b[3:])
  with pytest.raises(ValueError, match="1-D"):
    metrics.paired_difference(a, b[:4])


def _official_head_tail(user_item_net: sp.csr_matrix):
  """Transcription of the official RDLAE code's split (strong/code/Procedure.py, `Test`)."""
  item_counts = np.array(user_item_net.sum(axis=0)).squeeze()
  sorted_by_item_counts = np.argsort(item_counts)[::-1]
  divide_idx = math.ceil(user_item_net.shape[1] * 0.2)
  return sorted_by_item_counts[:divide_idx], sorted_by_item_counts[divide_idx:]


def _official_train_matrix(rows, cols, shape):
  """The official `UserItemNet`: float64 ones at (user, item) of train.txt."""
  return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def test_head_item_mask_follows_official_rule_among_ties():
  # 10 items, counts [1, 3, 3, 0, 3, 2, 3, 1, 0, 2]: ceil(.2 * 10) = 2 head items among the four
  # items of count 3 (1, 2, 4, 6).
  per_item = [1, 3, 3, 0, 3, 2, 3, 1, 0, 2]
  cols = np.repeat(np.arange(10), per_item)
  rows = np.concatenate([np.arange(c) for c in per_item])
  train = _official_train_matrix(rows, cols, (3, 10))
  head, tail = _official_head_tail(train)
  mask = metrics.head_item_mask(np.asarray(train.sum(0)).ravel().astype(np.int64), 0.2)
  assert sorted(np.flatnonzero(mask)) == sorted(head)
  assert sorted(np.flatnonzero(~mask)) == sorted(tail)
  stable = np.argsort(-np.asarray(per_item), kind="stable")[:2]   # the lower ids first: {1, 2}
  assert set(np.flatnonzero(mask)) != set(stable)
  assert metrics.head_item_mask(np.arange(10), 0.2).tolist() == [False] * 8 + [True] * 2
  assert metrics.head_item_mask(np.full(16, 2), 0.2).sum() == 4   # ceil(3.2)


def test_head_item_mask_equals_official_on_larger_ties():
  rng = np.random.default_rng(0)
  rows, cols = rng.integers(0, 40, 600), rng.integers(0, 300, 600)
  train = _official_train_matrix(rows, cols, (40, 300))   # duplicates sum, as in the official code
  head, _ = _official_head_tail(train)
  mask = metrics.head_item_mask(np.asarray(train.sum(0)).ravel(), 0.2)
  assert sorted(np.flatnonzero(mask)) == sorted(head)


def test_masked_top_k_ties_prefer_lower_id():
  scores = jnp.array([[1.0, 2.0, 2.0, 0.0, 2.0, 1.0]])
  exclude = jnp.array([[False, False, True, False, False, False]])
  np.testing.assert_array_equal(metrics.masked_top_k(scores, exclude, 4), [[1, 4, 0, 5]])


def test_masked_top_k_never_returns_excluded():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(64, 30)).astype(np.float32)
  exclude = rng.random((64, 30)) < 0.7
  exclude[0] = True  # a row with nothing to rank
  top = np.asarray(metrics.masked_top_k(jnp.asarray(scores), jnp.asarray(exclude), 12))
  assert top.dtype == np.int32 and top.shape == (64, 12)
  for u in range(64):
    allowed = np.flatnonzero(~exclude[u])
    num_valid = min(12, len(allowed))
    valid, padding = top[u, :num_valid], top[u, num_valid:]
    assert not exclude[u, valid].any()
    np.testing.assert_array_equal(padding, -1)  # short rows padded, not filled with excluded ids
    expected = allowed[np.argsort(-scores[u, allowed], kind="stable")][:num_valid]
    np.testing.assert_array_equal(valid, expected)


def test_empty_slots_never_hit():
  target = _csr([{0, 1}, {2}], 4)
  top = np.array([[-1, 1], [-1, -1]])
  mask = np.array([0, 1, 1, 0], bool)
  per_user = metrics.ranking_metrics(top, target, (2,), "min", item_mask=mask)
  # User 0: restricted target {1} hit at rank 2; the -1 slot must not index item n - 1.
  np.testing.assert_allclose(per_user["recall@2"], [1.0, 0.0])
  np.testing.assert_allclose(per_user["ndcg@2"], [D2, 0.0])


def test_target_hits_matches_scipy_indexing():
  rng = np.random.default_rng(1)
  target = sp.random(40, 25, density=0.2, format="csr", random_state=2, dtype=np.float32)
  target.data[:] = 1.0
  top = np.stack([rng.permutation(25)[:7] for _ in range(40)])
  expected = np.asarray(target[np.arange(40)[:, None], top].todense()) > 0
  np.testing.assert_array_equal(metrics.target_hits(top, target), expected)


# ---- evaluate against an independent dense reference ----


def _reference(fold_in, target, B, ks, normalization, head):
  """Dense scores, argsort per user, metrics by explicit sums; means over users that count."""
  scores = fold_in.toarray().astype(np.float64) @ B
  scores[fold_in.toarray() > 0] = -np.inf
  order = np.argsort(-scores, axis=1, kind="stable")[:, :max(ks)]
  groups = {"": np.ones(B.shape[0], bool)}
  if head is not None:
    groups.update({"head_": head, "tail_": ~head})
  sums, counts = {}, {}
  for prefix, mask in groups.items():
    for u in range(scores.shape[0]):
      relevant = {i for i in target[u].indices if mask[i]}
      if not relevant:
        continue
      counts[prefix] = counts.get(prefix, 0) + 1
      for k in ks:
        hits = [int(i) in relevant for i in order[u, :k]]
        norm = min(k, len(relevant)) if normalization == "min" else len(relevant)
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        for name, value in ((f"{prefix}recall@{k}", sum(hits) / norm),
                            (f"{prefix}ndcg@{k}", dcg / idcg)):
          sums[name] = sums.get(name, 0.0) + value
  out = {}
  for name, total in sums.items():
    prefix = name.split("_")[0] + "_" if "_" in name else ""
    out[name] = total / counts[prefix]
  out.update({f"{prefix}num_users": count for prefix, count in counts.items()})
  return out


def _random_problem(seed, num_users=37, num_items=50):
  rng = np.random.default_rng(seed)
  interactions = rng.random((num_users, num_items)) < 0.25
  held_out = rng.random((num_users, num_items)) < 0.4
  fold_in = sp.csr_matrix((interactions & ~held_out).astype(np.float32))
  target_dense = (interactions & held_out).astype(np.float32)
  target_dense[[3, 17, 30]] = 0.0  # users with nothing to predict
  # Multiples of 1/16 keep every score exact in float32, so ties (frequent) are true ties in both.
  B = rng.integers(-32, 32, size=(num_items, num_items)) / 16.0
  head = metrics.head_item_mask(np.asarray(fold_in.sum(0)).ravel())
  return EvalSet(fold_in=fold_in, target=sp.csr_matrix(target_dense)), B, head


def _linear_scores(B, x):
  return x @ B


@pytest.mark.parametrize("normalization", ["min", "size"])
@pytest.mark.parametrize("batch_size", [1, 8, 10, 37, 100])
def test_evaluate_matches_dense_reference(normalization, batch_size):
  eval_set, B, head = _random_problem(seed=3)
  ks = (1, 5, 10)
  result = metrics.evaluate(
      _linear_scores, jnp.asarray(B, jnp.float32), eval_set, ks, normalization=normalization,
      head_items=head, batch_size=batch_size, progress=False)
  expected = _reference(eval_set.fold_in, eval_set.target, B, ks, normalization, head)
  assert set(result) == set(expected)
  assert result["num_users"] == 34
  _assert_dict_close(result, expected)


def test_evaluate_is_batch_size_invariant():
  eval_set, B, head = _random_problem(seed=4, num_users=53)
  results = [
      metrics.evaluate(_linear_scores, jnp.asarray(B, jnp.float32), eval_set, (3, 20),
                       head_items=head, batch_size=batch_size, progress=False)
      for batch_size in (1, 7, 16, 53, 1000)]
  for result in results[1:]:
    assert result == results[0]


def test_evaluate_compiles_once_and_takes_params_as_argument():
  eval_set, B, _ = _random_problem(seed=5)
  traces = []

  def score_fn(params, x):
    traces.append(x.shape)
    return x @ params

  for seed in (5, 6):
    B = np.random.default_rng(seed).integers(-32, 32, size=B.shape) / 16.0
    result = metrics.evaluate(score_fn, jnp.asarray(B, jnp.float32), eval_set, (5,),
                              batch_size=10, progress=False)  # 37 users: 4 batches, the last padded
    _assert_dict_close(result, _reference(eval_set.fold_in, eval_set.target, B, (5,), "min", None))
  assert traces == [(10, 50)]  # one trace for both parameter values: params are not baked in


def test_evaluate_all_ties_ranks_lowest_ids():
  eval_set = EvalSet(fold_in=_csr([{0}, {1, 2}], 5), target=_csr([{1, 4}, {0, 4}], 5))
  result = metrics.evaluate(lambda p, x: jnp.zeros_like(x), None, eval_set, (2,), progress=False)
  # Ranked: user 0 -> [1, 2] (1 hit); user 1 -> [0, 3] (1 hit).
  assert result["recall@2"] == 0.5 and result["num_users"] == 2
  np.testing.assert_allclose(result["ndcg@2"], (D1 / (D1 + D2) + D1 / (D1 + D2)) / 2)


def test_evaluate_rejects_bad_input():
  eval_set, B, head = _random_problem(seed=7)
  params = jnp.asarray(B, jnp.float32)
  with pytest.raises(ValueError, match="normalization"):
    metrics.evaluate(_linear_scores, params, eval_set, (5,), normalization="mean", progress=False)
  with pytest.raises(ValueError, match="exceeds"):
    metrics.evaluate(_linear_scores, params, eval_set, (51,), progress=False)
  with pytest.raises(ValueError, match="item mask"):
    metrics.evaluate(_linear_scores, params, eval_set, (5,), head_items=head[:-1], progress=False)
  with pytest.raises(FloatingPointError, match="NaN"):
    metrics.evaluate(lambda p, x: x @ p * jnp.nan, params, eval_set, (5,), progress=False)


def test_nan_scores_of_padding_rows_are_ignored():
  eval_set, B, _ = _random_problem(seed=8)
  # Dividing by the fold-in size gives NaN only on the all-zero padding rows (every user has items).
  assert (np.diff(eval_set.fold_in.indptr) > 0).all()
  result = metrics.evaluate(lambda p, x: (x @ p) / x.sum(1, keepdims=True),
                            jnp.asarray(B, jnp.float32), eval_set, (5,), batch_size=10,
                            progress=False)
  assert result["num_users"] == 34
