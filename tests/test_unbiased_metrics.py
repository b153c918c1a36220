"""Tests of the RLAE paper's unbiased metrics and Precision@k: hand-computed cases, a transcription of
the official RDLAE code (strong/code/utils.py) as reference, and the file order of test items."""

import os

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_core import metrics, readers, unbiased_metrics
from recsys_core.dataset import EvalSet, ordered_row_items

D2, D3 = 1 / np.log2(3), 0.5   # 1 / log2(r + 1) at ranks 2, 3

# Hand case: 5 items with training counts [4, 1, 1, 0, 16]: p = max(sqrt(c / 16), .01)
# = [.5, .25, .25, .01, 1], 1/p = [2, 4, 4, 100, 1].
COUNTS = np.array([4, 1, 1, 0, 16])
#   user A: top [4, 1, 0], test items in file order [3, 0, 1]   -> hits [0, 1, 1]
#   user B: top [3, 2, 4], test [2]                             -> hits [0, 1, 0]
#   user C: no test item                                        -> skipped (NaN)
SCORES = np.array([[.5, .8, .1, .0, .9], [.0, .1, .8, .9, .5], [.1, .2, .3, .4, .5]], np.float32)
TARGET_ROWS = [[3, 0, 1], [2], []]
EXPECTED = {
    "urecall@1": [0.0, 0.0], "uprecision@1": [0.0, 0.0], "undcg@1": [0.0, 0.0],
    # A: D_2 = 1/p_3 + 1/p_0 = 102 (the first two in file order), hit weight 4 at rank 2.
    "urecall@2": [4 / 102, 4 / 4], "uprecision@2": [4 / (1 + 4), 4 / (100 + 4)],
    "undcg@2": [4 * D2 / 102 / (1 + D2), 4 * D2 / 4 / 1],
    "urecall@3": [6 / 106, 1.0], "uprecision@3": [6 / 7, 4 / 105],
    "undcg@3": [(4 * D2 + 2 * D3) / 106 / (1 + D2 + D3), D2],
    "precision@1": [0.0, 0.0], "precision@2": [0.5, 0.5], "precision@3": [2 / 3, 1 / 3],
}


def _eval_set(rows, num_items, ordered=True):
  u = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
  i = np.concatenate([np.asarray(r, np.int64) for r in rows])
  target = sp.csr_matrix((np.ones(len(i), np.float32), (u, i)), shape=(len(rows), num_items))
  return EvalSet(fold_in=sp.csr_matrix((len(rows), num_items), dtype=np.float32), target=target,
                 target_order=ordered_row_items(u, i, num_items) if ordered else None)


def _evaluate(eval_set, scores, ks, **kwargs):
  return metrics.evaluate_per_user(lambda params, fold_in, s: s, (), eval_set, ks,
                                   batch_inputs=lambda a, b: scores[a:b], progress=False,
                                   batch_size=2, **kwargs)


def test_propensity_official_formula():
  np.testing.assert_allclose(unbiased_metrics.propensity(COUNTS), [.5, .25, .25, .01, 1.0])
  np.testing.assert_allclose(unbiased_metrics.propensity([1, 10_000_000]), [.01, 1.0])  # floored
  with pytest.raises(ValueError, match="positive maximum"):
    unbiased_metrics.propensity(np.zeros(3))


def test_hand_case_through_evaluate():
  out = _evaluate(_eval_set(TARGET_ROWS, 5), SCORES, (1, 2, 3), precision=True,
                  propensity=unbiased_metrics.propensity(COUNTS))
  for name, values in EXPECTED.items():
    np.testing.assert_allclose(out[name][:2], values, rtol=1e-12, err_msg=name)
    assert np.isnan(out[name][2]), name
  assert "head_precision@1" not in out and "recall@3" in out


def test_file_order_changes_the_denominator():
  """A's first test item in file order is 3 (1/p = 100); in id order it would be 0 (1/p = 2)."""
  propensity = unbiased_metrics.propensity(COUNTS)
  by_id = _evaluate(_eval_set(TARGET_ROWS, 5, ordered=False), SCORES, (2,), propensity=propensity)
  assert by_id["urecall@2"][0] == pytest.approx(4 / (2 + 4))   # D_2 over items 0, 1
  in_file = _evaluate(_eval_set(TARGET_ROWS, 5), SCORES, (2,), propensity=propensity)
  assert in_file["urecall@2"][0] == pytest.approx(4 / 102)


def test_bad_target_order_is_refused():
  eval_set = _eval_set(TARGET_ROWS, 5)
  bad = EvalSet(eval_set.fold_in, eval_set.target, np.array([3, 0, 4, 2], np.int32))
  with pytest.raises(ValueError, match="target_order"):
    _evaluate(bad, SCORES, (2,), propensity=unbiased_metrics.propensity(COUNTS))


# --- transcription of the official RDLAE code (strong/code/utils.py), the reference ----------

def _official_label(test_data, pred_data):
  return np.array([[x in gt for x in top] for gt, top in zip(test_data, pred_data)], float)


def _official_urec_prec(sorted_items, test_data, r, k, pscore):
  pred_data = r[:, :k]
  pred_pscore = pscore[sorted_items][:, :k]
  ytrue = np.zeros((len(test_data), 1))
  for i, items in enumerate(test_data):
    for j in range(min(k, len(items))):
      ytrue[i] += 1 / pscore[items[j]]
  ur = pred_data / pred_pscore
  return ((ur / ytrue).sum(), (ur / np.sum(1. / pred_pscore, axis=1, keepdims=True)).sum())


def _official_undcg(sorted_items, test_data, r, k, pscore):
  pred_data = r[:, :k]
  pred_pscore = pscore[sorted_items][:, :k]
  ytrue = np.zeros(len(test_data))
  max_r = np.zeros((len(pred_data), k))
  for i, items in enumerate(test_data):
    max_r[i, :min(k, len(items))] = 1
    for j in range(min(k, len(items))):
      ytrue[i] += 1 / pscore[items[j]]
  tp = np.log2(np.arange(2, k + 2))
  idcg = np.sum(max_r / tp, axis=1)
  udcg = np.sum(pred_data / (pred_pscore * tp), axis=1) / ytrue
  idcg[idcg == 0.] = 1.
  undcg = udcg / idcg
  undcg[np.isnan(undcg)] = 0.
  return np.sum(undcg)


def test_equals_transcription_of_official_code():
  rng = np.random.default_rng(0)
  num_users, num_items, ks = 40, 300, (10, 20, 50)
  counts = rng.poisson(rng.gamma(0.5, 8.0, num_items))            # many rare items, some zero
  pscore = np.maximum((counts / counts.max()) ** 0.5, 10e-3)      # strong/code/main.py
  test_data = [list(rng.choice(num_items, rng.integers(1, 80), replace=False))
               for _ in range(num_users)]                         # file order: random
  scores = rng.random((num_users, num_items)).astype(np.float32)
  for u, items in enumerate(test_data):                           # make hits likely
    scores[u, items[::2]] += 0.6
  sorted_items = np.argsort(-scores, axis=1, kind="stable")[:, :max(ks)]
  r = _official_label(test_data, sorted_items)
  out = _evaluate(_eval_set(test_data, num_items), scores, ks, precision=True,
                  propensity=unbiased_metrics.propensity(counts))
  for k in ks:
    urecall, uprecision = _official_urec_prec(sorted_items, test_data, r, k, pscore)
    assert out[f"urecall@{k}"].sum() == pytest.approx(urecall, rel=1e-10)
    assert out[f"uprecision@{k}"].sum() == pytest.approx(uprecision, rel=1e-10)
    assert out[f"undcg@{k}"].sum() == pytest.approx(
        _official_undcg(sorted_items, test_data, r, k, pscore), rel=1e-10)
    assert out[f"precision@{k}"].sum() == pytest.approx(r[:, :k].sum() / k, rel=1e-12)
  assert out["urecall@50"].max() > 0


def test_ordered_row_items_keeps_first_seen_order():
  rows = np.array([1, 0, 1, 1, 0, 1])
  cols = np.array([7, 3, 2, 7, 1, 5])
  np.testing.assert_array_equal(ordered_row_items(rows, cols, 8), [3, 1, 7, 2, 5])


def test_presplit_reader_keeps_file_order(tmp_path):
  folder = tmp_path / "gowalla_strong"
  folder.mkdir()
  files = {"unique_sid.txt": "\n".join(f"i{j}" for j in range(6)),
           "train.txt": "0 0 1 2\n1 3 4 5", "valid_in.txt": "0 1 2", "valid.txt": "0 5 0",
           "test_in.txt": "3 0\n4 1", "test.txt": "3 5 2 4\n4 3 0"}
  for name, text in files.items():
    (folder / name).write_text(text + "\n")
  _, split = readers.read_strong_folder(os.fspath(folder))
  np.testing.assert_array_equal(split.test.target_order, [5, 2, 4, 3, 0])
  np.testing.assert_array_equal(split.valid.target_order, [5, 0])
  np.testing.assert_array_equal(split.test.target.indices, [2, 4, 5, 0, 3])   # CSR sorts
