"""lae_jax/ace.py against numpy float64 references; lae_jax/ace_plots.py writes PNGs."""

import numpy as np
import pytest

from lae_jax import ace
from lae_jax import ace_plots


def anisotropic(n=200, d=24, rank=4, mean=3.0, noise=0.3, seed=0):
  """[n, d] float64 unit rows: a shared direction + low-rank structure + noise (an LLM-like cone)."""
  rng = np.random.default_rng(seed)
  x = (mean * rng.normal(size=d) + rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
       + noise * rng.normal(size=(n, d)))
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def mean_cosine(x):
  """Mean pairwise cosine of the rows (numpy, exact)."""
  u = x / np.linalg.norm(x, axis=1, keepdims=True)
  c = u @ u.T
  return (c.sum() - np.trace(c)) / (len(x) * (len(x) - 1))


@pytest.mark.parametrize("lam", [0.5, 5.0, 50.0])
def test_gram_of_ace_is_the_lae_solution(lam):
  e = anisotropic()
  ours = np.asarray(ace.ace_embeddings(e.astype(np.float32), lam), np.float64)  # untruncated, unscaled
  gram = e @ e.T
  reference = np.linalg.solve(gram + lam * np.eye(len(e)), gram)  # B = (E E^T + lambda I)^-1 E E^T
  np.testing.assert_allclose(ours @ ours.T, reference, atol=2e-5)


def test_matches_the_svd_form_up_to_column_signs():
  e = anisotropic(n=150, d=20)
  u, s, _ = np.linalg.svd(e, full_matrices=False)
  lam, k = 2.0, 7
  reference = u[:, :k] * np.sqrt(s[:k] ** 2 / (s[:k] ** 2 + lam))
  ours = np.asarray(ace.ace_embeddings(e.astype(np.float32), lam, k), np.float64)
  signs = np.sign(np.sum(ours * reference, axis=0))
  np.testing.assert_allclose(ours * signs, reference, atol=2e-5)


def test_lambda_zero_is_isotropic_and_large_lambda_keeps_the_raw_spectrum():
  e = anisotropic()
  raw = np.linalg.svd(e, compute_uv=False)
  assert raw[0] / raw[-1] > 20  # strongly anisotropic input
  flat = np.linalg.svd(np.asarray(ace.ace_embeddings(e.astype(np.float32), 0.0), np.float64),
                       compute_uv=False)
  np.testing.assert_allclose(flat, 1.0, atol=2e-3)
  big = np.linalg.svd(np.asarray(ace.ace_embeddings(e.astype(np.float32), 1e6), np.float64),
                      compute_uv=False)
  np.testing.assert_allclose(big / big[0], raw / raw[0], rtol=1e-3, atol=1e-6)
  # The analytic spectrum used by the plots is the same function.
  mid = np.linalg.svd(np.asarray(ace.ace_embeddings(e.astype(np.float32), 3.0), np.float64),
                      compute_uv=False)
  np.testing.assert_allclose(ace.ace_gain(raw ** 2, 3.0), mid, atol=1e-5)


def test_anisotropy_falls_as_lambda_falls():
  e = anisotropic()
  cosines = [mean_cosine(np.asarray(ace.ace_item_table(e, lam, 8, 0.1))) for lam in (1e4, 50, 1, 0)]
  assert mean_cosine(e) > 0.7 and abs(cosines[0] - mean_cosine(e)) < 0.01  # about 0.76
  assert cosines[0] > cosines[1] + 0.2 > cosines[2] + 0.4 > cosines[3] + 0.4  # .76, .53, .23, .14


def test_truncated_scaled_table_and_bad_arguments():
  e = anisotropic(n=300, d=40)
  table = np.asarray(ace.ace_item_table(e, 50.0, 16, 0.1))
  assert table.shape == (300, 16) and table.dtype == np.float32
  assert abs(table.std() - 0.1) < 1e-6
  full = np.asarray(ace.ace_embeddings(e.astype(np.float32), 50.0))
  unscaled = table * (full[:, :16].std() / 0.1)
  signs = np.sign(np.sum(unscaled * full[:, :16], axis=0))
  np.testing.assert_allclose(unscaled * signs, full[:, :16], atol=1e-5)
  with pytest.raises(ValueError, match="min\\(items, dims\\) = 40"):
    ace.ace_item_table(e, 50.0, 41, 0.1)
  with pytest.raises(ValueError, match="scale > 0"):
    ace.ace_item_table(e, 50.0, 8, 0.0)


def test_float32_accuracy_on_a_catalogue_sized_cone():
  # 6000 unit rows around one direction: s_1^2 ~ 5000, the regime of real catalogues.
  e = anisotropic(n=6000, d=128, rank=16, mean=2.0, noise=0.2, seed=1)
  ours = np.asarray(ace.ace_embeddings(e.astype(np.float32), 50.0, 64), np.float64)
  u, s, _ = np.linalg.svd(e, full_matrices=False)
  reference = u[:, :64] * np.sqrt(s[:64] ** 2 / (s[:64] ** 2 + 50.0))
  # Compare through the subspace-invariant Gram matrix of item pairs (a sample of items).
  rows = np.random.default_rng(0).choice(6000, 500, replace=False)
  np.testing.assert_allclose(ours[rows] @ ours[rows].T, reference[rows] @ reference[rows].T,
                             atol=2e-6)


def test_plots_write_pngs(tmp_path):
  raw = np.linalg.svd(anisotropic(), compute_uv=False)
  spectra = ace_plots.plot_spectra(raw, [0, 10, 50, 1000], str(tmp_path / "a" / "spectra.png"), k=8)
  runs = [{"lam": lam, "test/ndcg@10": 0.05 + 0.001 * seed + 0.01 * (lam == 50)}
          for lam in (0, 10, 50, 5000) for seed in range(3)]
  curve = ace_plots.plot_metric_vs_lambda(runs, "test/ndcg@10", str(tmp_path / "curve.png"),
                                          reference={"ID-only": 0.05})
  for path in (spectra, curve):
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
