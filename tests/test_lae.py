"""The LAE family against an independent float64 numpy reference, its identities and KKT conditions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from lae_jax import closed_forms, linalg, solve, sweep

jax.config.update("jax_enable_x64", True)  # the float64 path is tested too; float32 stays explicit


def random_interactions(num_users, num_items, density=0.08, seed=0):
  rng = np.random.default_rng(seed)
  popularity = density * np.geomspace(0.2, 5.0, num_items)  # skewed, so diag(B) varies by item
  dense = (rng.random((num_users, num_items)) < popularity).astype(np.float32)
  return sp.csr_matrix(dense)


def reference_b(x, model, lam, p=0.0, xi=0.0):
  """The DESIGN.md table, written straight from the formulas with numpy.linalg.inv in float64."""
  g = (x.T @ x).toarray().astype(np.float64)
  n = g.shape[0]
  eye = np.eye(n)
  if model in ("lae", "ease", "rlae"):
    inv = np.linalg.inv(g + lam * eye)
    gamma = np.full(n, lam)
  else:
    gamma = lam + p / (1 - p) * np.diag(g)
    inv = np.linalg.inv(g + np.diag(gamma))
  if model in ("lae", "dlae"):
    return eye - inv @ np.diag(gamma)
  if model in ("ease", "edlae"):
    return eye - inv @ np.diag(1.0 / np.diag(inv))
  mu = np.maximum(0.0, (1 - xi) / np.diag(inv) - gamma)
  return eye - inv @ np.diag(gamma + mu)


MODELS = [("lae", 30.0, 0.0, 1.0), ("ease", 20.0, 0.0, 0.0), ("rlae", 20.0, 0.0, 0.3),
          ("dlae", 10.0, 0.5, 1.0), ("edlae", 10.0, 0.6, 0.0), ("rdlae", 10.0, 0.5, 0.3)]


@pytest.mark.parametrize("method", ["direct", "woodbury"])
@pytest.mark.parametrize("backend", ["lapack", "jax"])
@pytest.mark.parametrize("model,lam,p,xi", MODELS)
def test_closed_forms_match_numpy_reference(model, lam, p, xi, method, backend):
  x = random_interactions(60, 40)
  expected = reference_b(x, model, lam, p, xi)
  b32, info = solve.fit(x, model, lam=lam, p=p, xi=xi, method=method, backend=backend)
  assert b32.dtype == jnp.float32 and info.method == method
  np.testing.assert_allclose(np.asarray(b32), expected, atol=2e-5)
  b64, _ = solve.fit(x, model, lam=lam, p=p, xi=xi, dtype=np.float64, method=method, backend=backend)
  assert b64.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(b64), expected, atol=1e-10)


def test_auto_method_picks_the_smaller_system():
  assert linalg.choose_method(random_interactions(30, 50)) == "woodbury"
  assert linalg.choose_method(random_interactions(50, 30)) == "direct"


@pytest.mark.parametrize("dropout,free,zero", [(False, "lae", "ease"), (True, "dlae", "edlae")])
def test_relaxed_reduces_to_free_and_zero_diagonal(dropout, free, zero):
  x = random_interactions(80, 50, seed=1)
  relaxed = "rdlae" if dropout else "rlae"
  kwargs = dict(lam=15.0, p=0.5, dtype=np.float64)
  b_xi0 = closed_forms.relaxed_b(*_c_gamma(x, relaxed, **kwargs), 1e-300)[0]
  np.testing.assert_allclose(b_xi0, solve.fit(x, zero, **kwargs)[0], atol=1e-10)
  np.testing.assert_allclose(solve.fit(x, relaxed, xi=1.0, **kwargs)[0], solve.fit(x, free, **kwargs)[0],
                             atol=1e-12)


def _c_gamma(x, model, lam, p, dtype):
  gamma = closed_forms.regulariser(linalg.item_counts(x), lam, p, closed_forms.MODELS[model].dropout)
  c = linalg.inverse_with_diagonal(x, gamma, dtype=dtype, method="direct", backend="lapack")
  return jnp.asarray(c), jnp.asarray(gamma, dtype)


@pytest.mark.parametrize("model,quantile", [("rlae", 0.3), ("rlae", 0.8), ("rdlae", 0.3), ("rdlae", 0.8)])
def test_kkt_conditions(model, quantile):
  x = random_interactions(70, 45, seed=2)
  lam, p = 12.0, 0.4
  c, gamma = _c_gamma(x, model, lam, p, np.float64)
  c_diag = np.diag(np.asarray(c))
  xi = float(np.quantile(1.0 - c_diag * np.asarray(gamma), quantile))  # bound inside the free diag(B)
  b, num_active = closed_forms.relaxed_b(c, gamma, xi)
  b, gamma = np.asarray(b), np.asarray(gamma)
  mu = np.maximum(0.0, (1 - xi) / c_diag - gamma)
  g = np.asarray((x.T @ x).toarray(), np.float64)
  np.testing.assert_allclose((g + np.diag(gamma)) @ b - g + np.diag(mu), 0.0, atol=1e-9)  # stationarity
  assert np.all(mu >= 0)                                                                # dual feasibility
  assert np.all(np.diag(b) <= xi + 1e-10)                                               # primal feasibility
  np.testing.assert_allclose(mu * (np.diag(b) - xi), 0.0, atol=1e-9)                   # complementary slackness
  assert 0 < int(num_active) < x.shape[1]  # this data has both active and inactive columns


def test_no_active_column_reduces_to_free_model():
  x = random_interactions(70, 45, seed=3)
  c, gamma = _c_gamma(x, "rlae", 500.0, 0.0, np.float64)
  b, num_active = closed_forms.relaxed_b(c, gamma, 0.99)
  assert int(num_active) == 0
  np.testing.assert_allclose(b, reference_b(x, "lae", 500.0), atol=1e-12)


@pytest.mark.parametrize("xi", [1.0, 0.0, 0.25])
def test_eigen_sweep_equals_direct_solves(xi):
  x = random_interactions(90, 50, seed=4)
  eigen = sweep.eigen_gram(x, np.float64)
  fold_in = jnp.asarray(random_interactions(7, 50, seed=5).toarray(), jnp.float64)
  model = {1.0: "lae", 0.0: "ease"}.get(xi, "rlae")
  for lam in (1.0, 20.0, 300.0):
    params, num_active = sweep.sweep_params(eigen, lam, xi)
    direct = reference_b(x, model, lam, xi=xi)
    np.testing.assert_allclose(sweep.sweep_scores(params, fold_in), np.asarray(fold_in) @ direct, atol=1e-9)


def test_spd_inverse_backends_agree_and_refuse_indefinite():
  rng = np.random.default_rng(6)
  a = rng.standard_normal((30, 30))
  a = a @ a.T + 30 * np.eye(30)
  np.testing.assert_allclose(linalg.spd_inverse(a.copy(), "lapack"), np.linalg.inv(a), atol=1e-12)
  np.testing.assert_allclose(linalg.spd_inverse(a.copy(), "jax"), np.linalg.inv(a), atol=1e-12)
  with pytest.raises(np.linalg.LinAlgError):
    linalg.spd_inverse(-a, "lapack")


def test_bad_hyperparameters_are_refused():
  x = random_interactions(20, 10)
  with pytest.raises(ValueError, match="unknown LAE model"):
    solve.fit(x, "vae", lam=1.0)
  with pytest.raises(ValueError, match="dropout probability"):
    solve.fit(x, "dlae", lam=1.0, p=1.0)


@pytest.mark.parametrize("model,lam,p,xi", MODELS)
def test_training_rows_scores_equal_x_times_b(model, lam, p, xi):
  x = random_interactions(40, 70, seed=7)  # fewer users than items: the Woodbury regime
  scores, info = solve.fit_training_scores(x, model, lam=lam, p=p, xi=xi, dtype=np.float64)
  np.testing.assert_allclose(scores, x.toarray() @ reference_b(x, model, lam, p, xi), atol=1e-10)
  scores32, _ = solve.fit_training_scores(x, model, lam=lam, p=p, xi=xi)
  np.testing.assert_allclose(scores32, scores, atol=3e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_cholesky_inverse_matches_numpy(monkeypatch, dtype):
  """The block recursion that sidesteps OpenBLAS's large-potrf crash gives the same inverse."""
  monkeypatch.setattr(linalg, "_POTRF_MAX_ROWS", 40)
  rng = np.random.default_rng(8)
  a = rng.standard_normal((173, 173))
  a = a @ a.T + 173 * np.eye(173)
  tolerance = 1e-6 if dtype == np.float32 else 1e-14
  np.testing.assert_allclose(linalg.spd_inverse(a.astype(dtype), "lapack"), np.linalg.inv(a), atol=tolerance)


def test_weak_run_path_equals_direct_solve():
  """fit_and_evaluate's weak shortcut (scores from the Woodbury factors) reports the direct path's metrics."""
  from configs import lae as lae_configs
  from recsys_core import splits, synthetic
  from lae_jax import run as lae_run
  config = lae_configs.get_config("rdlae_synthetic")
  config.progress, config.recall_normalization = False, "size"
  split = splits.weak_split(synthetic.make_synthetic(num_users=300, num_items=800, seed=1), seed=0,
                            valid_fraction=0.0)
  shortcut = lae_run.fit_and_evaluate(config, split)
  config.solve_method = "direct"
  direct = lae_run.fit_and_evaluate(config, split)
  assert (shortcut["solve/method"], direct["solve/method"]) == ("woodbury-rows", "direct")
  for key in ("test/recall@20", "test/ndcg@100", "test/tail_recall@20"):
    assert abs(shortcut[key] - direct[key]) < 1e-5, key


def test_cpu_scorer_uses_sparse_products_with_the_dense_products_metrics():
  """On the CPU, users are scored by scipy's sparse X_u times B; same metrics as the dense X_u @ B."""
  from recsys_core import metrics as metrics_lib
  from recsys_core.dataset import EvalSet
  x = random_interactions(120, 90, seed=3)
  b = np.asarray(solve.fit(x, "ease", lam=15.0)[0])  # on the host whatever the default backend
  fold_in = random_interactions(57, 90, density=0.05, seed=4)
  target = random_interactions(57, 90, density=0.05, seed=5)
  target = sp.csr_matrix(target.multiply(fold_in.toarray() == 0))
  eval_set = EvalSet(fold_in=fold_in, target=target)
  score_fn, params, batch_inputs = solve.scorer(b, fold_in)
  assert score_fn is solve.given_scores and batch_inputs is not None
  np.testing.assert_allclose(batch_inputs(5, 17), fold_in[5:17].toarray() @ np.asarray(b), atol=1e-5)
  kwargs = dict(ks=(5, 20), batch_size=16, progress=False)
  sparse = metrics_lib.evaluate(score_fn, params, eval_set, batch_inputs=batch_inputs, **kwargs)
  dense = metrics_lib.evaluate(solve.lae_scores, b, eval_set, **kwargs)
  assert sparse == pytest.approx(dense, abs=1e-6) and dense["num_users"] > 40


def dot_precisions(closed_jaxpr):
  """The `precision` of every dot_general in a jaxpr, nested jit bodies included."""
  found = []
  for eqn in closed_jaxpr.jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn.params["precision"])
    for value in eqn.params.values():
      if hasattr(value, "jaxpr") and hasattr(value, "consts"):  # a nested ClosedJaxpr (jit)
        found += dot_precisions(value)
  return found


def test_device_scoring_products_ask_for_full_float32():
  """On a GPU a default-precision float32 product runs in TF32 (10-bit mantissa): on an H200 it moved
  EASE's ML-1M NDCG@100 from .4745 to .4743 (benchmarks/results/gpu_h200.md). Every product of the
  on-device closed-form scoring asks for HIGHEST, so accelerators score as the CPU does. (Traced under
  the default precision: conftest.py raises the session's default, which would hide a missing one.)"""
  highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
  b, fold_in = jnp.ones((6, 6), jnp.float32), jnp.ones((3, 6), jnp.float32)
  eigen = sweep.Eigen(jnp.ones(6, jnp.float32), jnp.eye(6, dtype=jnp.float32))
  with jax.default_matmul_precision("default"):
    params, _ = sweep.sweep_params(eigen, 1.0, 0.5)
    traced = {
        "lae_scores": jax.make_jaxpr(solve.lae_scores)(b, fold_in),
        "sweep_params": jax.make_jaxpr(lambda e: sweep.sweep_params(e, 1.0, 0.5))(eigen),
        "sweep_scores": jax.make_jaxpr(sweep.sweep_scores)(params, fold_in),
    }
  for name, jaxpr in traced.items():
    precisions = dot_precisions(jaxpr)
    assert precisions, f"{name}: no matrix product traced"
    assert all(p == highest for p in precisions), (name, precisions)


def test_gram_matrix_on_the_mesh_equals_the_host_one():
  """lae_jax/gram.py: user blocks over the mesh's devices, one all-reduce == scipy's sparse X^T X
  (several blocks per device and a last, zero-padded one)."""
  from lae_jax import gram  # pylint: disable=import-outside-toplevel
  from recsys_core import train  # pylint: disable=import-outside-toplevel
  x = sp.random(203, 37, density=0.2, random_state=3, format="csr", dtype=np.float32)
  x.data[:] = 1.0
  on_mesh = gram.gram_matrix_on_mesh(x, train.make_mesh(), np.float32, rows_per_device=16)
  np.testing.assert_array_equal(on_mesh, linalg.gram_matrix(x, np.float32))
  assert on_mesh.flags.writeable  # the direct route adds the diagonal in place
