"""The xi curve of RLAE / RDLAE from one inverse equals separate solves at every xi."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from lae_jax import solve, sweep

jax.config.update("jax_enable_x64", True)  # float64 here; float32 stays explicit

XIS = tuple(np.round(np.arange(0.0, 1.01, 0.1), 1))


def _interactions(num_users=150, num_items=60, seed=0):
  rng = np.random.default_rng(seed)
  popularity = 0.08 * np.geomspace(0.2, 5.0, num_items)
  return sp.csr_matrix((rng.random((num_users, num_items)) < popularity).astype(np.float32))


@pytest.mark.parametrize("model,lam,p,zero,free", [("rlae", 20.0, 0.0, "ease", "lae"),
                                                   ("rdlae", 5.0, 0.2, "edlae", "dlae")])
@pytest.mark.parametrize("method", ["direct", "woodbury"])
def test_curve_equals_separate_solves(model, lam, p, zero, free, method):
  x = _interactions()
  c, gamma = sweep.xi_inverse(x, model, lam=lam, p=p, dtype=np.float64, method=method)
  curve = sweep.xi_curve(np.diagonal(np.asarray(c)), gamma, XIS)
  assert curve.scales.shape == (len(XIS), 60)
  assert curve.num_active[0] == 60 and curve.num_active[-1] == 0
  assert any(0 < a < 60 for a in curve.num_active)   # some xi is truly relaxed
  for i, xi in enumerate(XIS):
    b, info = solve.fit(x, model, lam=lam, p=p, xi=xi, dtype=np.float64, method=method)
    np.testing.assert_allclose(sweep.xi_b(c, curve.scales[i]), b, atol=1e-12, err_msg=str(xi))
    assert curve.num_active[i] == info.num_active or xi == 0.0
  for xi, other in ((0.0, zero), (1.0, free)):
    b, _ = solve.fit(x, other, lam=lam, p=p, dtype=np.float64, method=method)
    np.testing.assert_allclose(sweep.xi_b(c, curve.scales[XIS.index(xi)]), b, atol=1e-12)


def test_scores_from_one_product():
  x = _interactions()
  c, gamma = sweep.xi_inverse(x, "rdlae", lam=15.0, p=0.4, dtype=np.float32)
  curve = sweep.xi_curve(np.diagonal(np.asarray(c)), gamma, (0.2, 0.6))
  fold_in = _interactions(20, 60, seed=3).toarray()
  fold_in_c = fold_in @ np.asarray(c)
  for i in range(2):
    np.testing.assert_allclose(sweep.xi_scores(fold_in, fold_in_c, curve.scales[i]),
                               fold_in @ np.asarray(sweep.xi_b(c, curve.scales[i])), atol=1e-5)


def test_xi_outside_unit_interval_is_refused():
  with pytest.raises(ValueError, match="xi"):
    sweep.xi_curve(np.ones(3), np.ones(3), (0.5, 1.2))
