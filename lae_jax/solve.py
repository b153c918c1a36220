"""Fit one member of the LAE family on a sparse user x item matrix: X -> B."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from lae_jax import closed_forms
from lae_jax import linalg
from recsys_core.precision import HIGHEST
from recsys_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SolveInfo:
  method: str          # 'direct' or 'woodbury'
  backend: str         # 'lapack' or 'jax'
  num_active: int      # columns whose diagonal bound is tight (mu_j > 0)
  solve_s: float       # wall seconds from sparse X to B on device


def fit(x: sp.spmatrix, model: str, *, lam: float, p: float = 0.0, xi: float = 1.0,
        dtype=np.float32, method: str = "auto", backend: str | None = None,
        mesh: jax.sharding.Mesh | None = None) -> tuple[jax.Array, SolveInfo]:
  """B ([n, n] `dtype`) of `model` ('lae', 'ease', 'rlae', 'dlae', 'edlae', 'rdlae') on X ([m, n]).

  lam: lambda; p: dropout probability (dropout models); xi: diagonal bound (relaxed models).
  float64 needs `jax.config.update('jax_enable_x64', True)`; it is refused otherwise instead of
  silently computing in float32. mesh: accumulate the Gram matrix over these devices
  (`linalg.inverse_with_diagonal`).
  """
  spec = closed_forms.model_spec(model)
  dtype = np.dtype(dtype)
  if dtype == np.float64 and not jax.config.jax_enable_x64:
    raise ConfigError("dtype float64 needs jax_enable_x64: set --config.dtype=float64 through launch.py "
                     "(which enables it) or call jax.config.update('jax_enable_x64', True)")
  start = time.perf_counter()
  gamma = closed_forms.regulariser(linalg.item_counts(x), lam, p, spec.dropout)
  method = linalg.choose_method(x) if method == "auto" else method
  linalg.check_dense_fits(x.shape[1], dtype, method)   # every route holds an [n, n] host array
  backend = backend or linalg.default_inverse_backend()
  c = linalg.inverse_with_diagonal(x, gamma, dtype=dtype, method=method, backend=backend,
                                   mesh=mesh)
  c = jnp.asarray(c, dtype=dtype)
  xi = closed_forms.effective_xi(model, xi)
  b, num_active = closed_forms.relaxed_b(c, jnp.asarray(gamma, dtype), xi)
  b.block_until_ready()
  info = SolveInfo(method=method, backend=backend, num_active=int(num_active),
                   solve_s=time.perf_counter() - start)
  return b, info


def fit_training_scores(x: sp.spmatrix, model: str, *, lam: float, p: float = 0.0, xi: float = 1.0,
                        dtype=np.float32, backend: str | None = None) -> tuple[np.ndarray, SolveInfo]:
  """Scores X B ([m, n] numpy `dtype`) of the training users themselves, without forming B.

  Needs users < items (the Woodbury path, `linalg.woodbury_training_rows`); this is what weak
  generalization evaluates, at the cost of the solve alone.
  """
  spec = closed_forms.model_spec(model)
  start = time.perf_counter()
  gamma = closed_forms.regulariser(linalg.item_counts(x), lam, p, spec.dropout)
  linalg.check_training_rows_fit(*x.shape, dtype)
  backend = backend or linalg.default_inverse_backend()
  scores, c_diag = linalg.woodbury_training_rows(x, gamma, np.dtype(dtype), backend)
  scale, active = closed_forms.diag_scale(jnp.asarray(c_diag), jnp.asarray(gamma, c_diag.dtype),
                                          closed_forms.effective_xi(model, xi))
  scores *= -np.asarray(scale, scores.dtype)[None, :]   # X B = X - (X C) diagMat(scale)
  rows, cols = sp.csr_matrix(x).nonzero()
  scores[rows, cols] += 1.0
  info = SolveInfo(method="woodbury-rows", backend=backend, num_active=int(jnp.sum(active)),
                   solve_s=time.perf_counter() - start)
  return scores, info


def lae_scores(b: jax.Array, fold_in: jax.Array) -> jax.Array:
  """Scores [batch, n] = X_u B for fold-in rows X_u [batch, n], in full float32: a GPU computes
  the default float32 product in TF32 (10-bit mantissa), which shifts the metrics
  (benchmarks/results/gpu_h200.md)."""
  return jnp.matmul(fold_in, b, precision=HIGHEST)


def given_scores(unused_params, unused_fold_in: jax.Array, scores: jax.Array) -> jax.Array:
  """score_fn for recsys_core.metrics.evaluate when the scores [batch, n] come as batch inputs."""
  return scores


def scorer(b: jax.Array, fold_in: sp.spmatrix) -> tuple:
  """How recsys_core.metrics.evaluate scores users by X_u B: (score_fn, params, batch_inputs).

  Where B lives on the CPU the product is sparse (scipy CSR rows times B, read in place): a batch
  costs nnz(X_batch) x n multiply-adds instead of the dense batch x n x n
  (benchmarks/results/lae_speed.md). On an accelerator the
  dense product on device is the faster one.

  Args:
    b: [n, n] B on a device (or a numpy array).
    fold_in: [users, n] sparse fold-in rows, the ones `evaluate` is given.
  """
  on_cpu = isinstance(b, np.ndarray) or all(d.platform == "cpu" for d in b.devices())
  if not on_cpu:
    return lae_scores, b, None
  host_b = np.asarray(b)
  rows = sp.csr_matrix(fold_in, dtype=host_b.dtype)
  return given_scores, (), lambda start, stop: rows[start:stop] @ host_b
