"""GF-CF (Shen et al., "How Powerful is Graph Convolution for Recommendation?", CIKM'21), as the
official RDLAE repository runs it as a baseline (RDLAE_SIGIR2023, strong|weak/code/model.py, `GFCF`).

With X the binary [m, n] training matrix, D_U = diagMat(X 1) and D_I = diagMat(X^T 1):
    R~ = D_U^-1/2 X D_I^-1/2                                  (normalised matrix; 0 for degree 0)
    B  = R~^T R~  +  alpha D_I^-1/2 V_k^T V_k D_I^1/2          (linear filter + ideal low-pass)
with V_k the [k, n] top-k right singular vectors of R~ (official: k = 256, `svds(norm_adj, 256)`),
and scores X_u B for fold-in rows X_u. Official gowalla setting: alpha = .1 (strong/gowalla.sh).

B is never formed: a batch of users is scored as ((X_u R~^T) R~) + alpha ((X_u D_I^-1/2) V_k^T)
(V_k D_I^1/2), a sparse product and a rank-k one. V_k comes from ARPACK (scipy's `svds`) on the
sparse R~, never from a dense SVD of the users x items matrix. One divergence: for an item with no
training user the official D_I^1/2 is 1/0 = inf (NaN scores); here it is 0 (the item's column of
R~, hence of V_k, is zero anyway). Items with no training user do not occur on gowalla.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sparse_linalg

from lae_jax import solve
from recsys_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class GFCF:
  """A fitted GF-CF model.

  Attributes:
    normalised: R~ [m, n] CSR float64.
    item_scale: [n] d_i^-1/2 (0 for items without training users).
    vt_left: [k, n] V_k D_I^-1/2, so that X_u D_I^-1/2 V_k^T = X_u @ vt_left.T.
    vt_right: [k, n] alpha V_k D_I^1/2.
    dtype: dtype of the scores.
  """
  normalised: sp.csr_matrix
  item_scale: np.ndarray
  vt_left: np.ndarray
  vt_right: np.ndarray
  dtype: np.dtype


def _inverse_sqrt(degrees: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore"):
    out = np.power(degrees, -0.5)
  out[~np.isfinite(out)] = 0.0
  return out


def normalise(x: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray]:
  """R~ = D_U^-1/2 X D_I^-1/2 ([m, n] CSR float64) and d_I^-1/2 ([n])."""
  x = sp.csr_matrix(x, dtype=np.float64)
  user_scale = _inverse_sqrt(np.asarray(x.sum(axis=1)).ravel())
  item_scale = _inverse_sqrt(np.asarray(x.sum(axis=0)).ravel())
  return sp.csr_matrix(sp.diags(user_scale) @ x @ sp.diags(item_scale)), item_scale


def top_right_singular_vectors(matrix: sp.spmatrix, k: int, seed: int = 0) -> np.ndarray:
  """[k, n] top-k right singular vectors of a sparse [m, n] matrix (ARPACK through scipy's svds)."""
  if not 0 < k < min(matrix.shape):
    raise ConfigError(f"config.gfcf_vectors={k} must be in 1..{min(matrix.shape) - 1} (below the "
                      f"smaller side of the {matrix.shape[0]} x {matrix.shape[1]} training matrix)")
  _, _, vt = sparse_linalg.svds(matrix, k=k, random_state=np.random.default_rng(seed))
  return vt


def fit(x: sp.spmatrix, *, alpha: float, num_vectors: int = 256, dtype=np.float32,
        seed: int = 0) -> tuple[GFCF, solve.SolveInfo]:
  """GF-CF on the [m, n] training matrix X; returns the model and its solve info."""
  start = time.perf_counter()
  normalised, item_scale = normalise(x)
  vt = top_right_singular_vectors(normalised, num_vectors, seed)
  item_sqrt = np.where(item_scale > 0, 1.0 / np.where(item_scale > 0, item_scale, 1.0), 0.0)
  dtype = np.dtype(dtype)
  model = GFCF(normalised=normalised.astype(dtype), item_scale=item_scale,
               vt_left=(vt * item_scale).astype(dtype),
               vt_right=(alpha * vt * item_sqrt).astype(dtype), dtype=dtype)
  return model, solve.SolveInfo(method="gfcf", backend="arpack", num_active=0,
                                solve_s=time.perf_counter() - start)


def scores(model: GFCF, fold_in: sp.spmatrix) -> np.ndarray:
  """[b, n] X_u B for sparse fold-in rows X_u [b, n], without forming B."""
  rows = sp.csr_matrix(fold_in, dtype=model.dtype)
  # (X_u R~^T) is a dense [b, m] block; times the sparse R~ it costs nnz(R~) per user, where the
  # sparse-sparse product would build a nearly dense sparse [b, n] result.
  users = (rows @ model.normalised.T).toarray()
  filtered = np.asarray(model.normalised.T @ users.T).T
  low_pass = (rows @ model.vt_left.T) @ model.vt_right
  return filtered + low_pass


def scorer(model: GFCF, fold_in: sp.spmatrix) -> tuple[Callable, tuple, Optional[Callable]]:
  """How recsys_core.metrics.evaluate scores users: (score_fn, params, batch_inputs), the scores
  of each batch computed on the host (as `solve.scorer` does for B on the CPU)."""
  rows = sp.csr_matrix(fold_in)
  return solve.given_scores, (), lambda start, stop: scores(model, rows[start:stop])


def dense_b(model: GFCF) -> np.ndarray:
  """B [n, n] itself (small n only: tests and inspection)."""
  gram = (model.normalised.T @ model.normalised).toarray()
  return gram + model.vt_left.T @ model.vt_right
