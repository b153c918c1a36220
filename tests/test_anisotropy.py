"""Anisotropy metrics against brute-force numpy and hand-computed spectra."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from recsys_core import anisotropy


def _cone(n=300, d=16, offset=2.0, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)) + offset * np.eye(d)[0]


def test_mean_pairwise_cosine_equals_brute_force():
  e = _cone()
  u = e / np.linalg.norm(e, axis=1, keepdims=True)
  cos = u @ u.T
  brute = (cos.sum() - np.trace(cos)) / (len(e) * (len(e) - 1))
  assert anisotropy.mean_pairwise_cosine(e) == pytest.approx(brute, abs=1e-12)
  assert anisotropy.mean_pairwise_cosine(np.eye(5)) == pytest.approx(0.0)
  assert anisotropy.mean_pairwise_cosine(np.ones((4, 3)) * [[1], [2], [3], [4]]) == pytest.approx(1.0)


def test_sampled_mean_is_within_its_standard_error():
  e = _cone(n=2000)
  exact = anisotropy.mean_pairwise_cosine(e)
  est, se = anisotropy.sampled_mean_pairwise_cosine(e, num_pairs=20000, seed=1)
  assert 0 < se < 0.01 and abs(est - exact) < 4 * se


def test_spectrum_metrics():
  s = anisotropy.singular_values(np.diag([4.0, 3.0, 2.0, 1.0]))
  np.testing.assert_allclose(s, [4, 3, 2, 1])
  assert anisotropy.top_k_share(s, 2) == pytest.approx(0.7)
  assert anisotropy.top_k_share(s, 2, power=2) == pytest.approx(25 / 30)
  assert anisotropy.effective_rank(np.ones(7)) == pytest.approx(7.0)
  assert anisotropy.effective_rank([5.0, 0.0, 0.0]) == pytest.approx(1.0)
  rank_one = np.outer(np.arange(1, 6), [1.0, 2.0, 3.0])
  assert anisotropy.effective_rank(anisotropy.singular_values(rank_one)) == pytest.approx(1.0, abs=1e-6)


def test_uniformity_equals_pdist():
  e = _cone(n=257)
  u = e / np.linalg.norm(e, axis=1, keepdims=True)
  brute = np.log(np.mean(np.exp(-2.0 * pdist(u, "sqeuclidean"))))
  assert anisotropy.uniformity(e, block=64) == pytest.approx(brute, rel=1e-10)


def test_report_and_bad_input():
  r = anisotropy.report(_cone())
  assert set(r) == {"mean_cosine", "top10_sv_share", "top10_energy_share", "effective_rank"}
  with pytest.raises(ValueError, match="all-zero rows"):
    anisotropy.mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 0.0]]))
  with pytest.raises(ValueError, match="need a matrix"):
    anisotropy.mean_pairwise_cosine(np.ones(3))
