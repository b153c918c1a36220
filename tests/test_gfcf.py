"""GF-CF against a dense float64 numpy reference (full SVD), and through the LAE run path."""

import numpy as np
import pytest
import scipy.sparse as sp

from lae_jax import gfcf
from recsys_core.errors import ConfigError


def _interactions(num_users=70, num_items=45, seed=0):
  rng = np.random.default_rng(seed)
  dense = (rng.random((num_users, num_items)) < np.geomspace(0.03, 0.5, num_items)).astype(np.float64)
  dense[3] = 0.0          # a user without items
  dense[:, 7] = 0.0       # an item without training users
  return dense


def reference_b(x, alpha, k):
  """B = R^T R + alpha D_I^-1/2 V_k^T V_k D_I^1/2 with R = D_U^-1/2 X D_I^-1/2, from numpy's full SVD."""
  users, items = x.sum(1), x.sum(0)
  du = np.where(users > 0, 1 / np.sqrt(np.maximum(users, 1)), 0.0)
  di = np.where(items > 0, 1 / np.sqrt(np.maximum(items, 1)), 0.0)
  r = du[:, None] * x * di[None, :]
  _, s, vt = np.linalg.svd(r)
  assert s[k - 1] - s[k] > 1e-6, "the test needs a gap at k for V_k V_k^T to be unique"
  vk = vt[:k]
  return r.T @ r + alpha * (di[:, None] * (vk.T @ vk) * np.sqrt(items)[None, :])


@pytest.mark.parametrize("k", [5, 20])
def test_b_and_scores_equal_dense_reference(k):
  x = _interactions()
  model, info = gfcf.fit(sp.csr_matrix(x), alpha=0.3, num_vectors=k, dtype=np.float64)
  expected = reference_b(x, 0.3, k)
  np.testing.assert_allclose(gfcf.dense_b(model), expected, atol=1e-10)
  fold_in = sp.csr_matrix(_interactions(9, 45, seed=1))
  np.testing.assert_allclose(gfcf.scores(model, fold_in), fold_in.toarray() @ expected, atol=1e-10)
  assert info.method == "gfcf" and info.solve_s > 0


def test_float32_scores_and_item_without_users():
  x = _interactions()
  model, _ = gfcf.fit(sp.csr_matrix(x), alpha=0.1, num_vectors=10, dtype=np.float32)
  out = gfcf.scores(model, sp.csr_matrix(x[:12]))
  assert out.dtype == np.float32 and np.isfinite(out).all()
  np.testing.assert_allclose(out, x[:12] @ reference_b(x, 0.1, 10), atol=1e-5)
  assert np.abs(out[:, 7]).max() < 1e-6   # the item without training users scores 0, not NaN


def test_too_many_vectors_is_refused():
  with pytest.raises(ConfigError, match="gfcf_vectors"):
    gfcf.fit(sp.csr_matrix(_interactions()), alpha=0.1, num_vectors=45)


def test_gfcf_preset_runs_through_the_lae_path():
  from configs import lae as lae_configs
  from lae_jax import run as lae_run
  config = lae_configs.get_config("gfcf_synthetic")
  config.progress, config.gfcf_vectors = False, 32
  out = lae_run.fit_and_evaluate(config, lae_run.load_split(config))
  assert out["solve/method"] == "gfcf" and out["hparams/alpha"] == 0.1
  for key in ("test/recall@20", "test/ndcg@100", "test/urecall@20", "test/precision@10",
              "test/tail_recall@20", "valid/ndcg@100"):
    assert np.isfinite(out[key]), key
  assert out["test/recall@20"] > 0.1
  split = lae_run.load_split(config)
  with pytest.raises(ConfigError, match="no search grid"):
    lae_run.search(config, split, "unused")
  config.gfcf_vectors = 0
  with pytest.raises(ConfigError, match="gfcf_vectors"):
    lae_run.fit_and_evaluate(config, split)
