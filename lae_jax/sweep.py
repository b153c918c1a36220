"""A lambda grid for LAE / EASE / RLAE from one eigendecomposition of the Gram matrix.

G = V diagMat(s) V^T gives P(lambda) = (G + lambda I)^-1 = V diagMat(1 / (s + lambda)) V^T for every
lambda at once. B(lambda) = I - P diagMat(scale) is never formed: diag P costs n^2 per lambda and the
scores of a batch of users are X_u - ((X_u V) diagMat(w)) V^T diagMat(scale), so each extra grid point
costs no more than scoring the evaluation users. (The dropout models have a non-scalar regulariser,
which does not shift the spectrum, so they are solved directly.)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from lae_jax import closed_forms
from lae_jax import linalg
from recsys_core.precision import HIGHEST


class Eigen(NamedTuple):
  values: jax.Array    # [n] eigenvalues s of G (>= 0 up to round-off)
  vectors: jax.Array   # [n, n] V, columns are eigenvectors


class SweepParams(NamedTuple):
  vectors: jax.Array   # [n, n] V
  weights: jax.Array   # [n] w = 1 / (s + lambda)
  scale: jax.Array     # [n] gamma + mu (column scale of B = I - P diagMat(scale))


def eigen_gram(x: sp.spmatrix, dtype=np.float32) -> Eigen:
  """Eigendecomposition of G = X^T X (built sparse, then dense [n, n])."""
  s, v = jnp.linalg.eigh(jnp.asarray(linalg.gram_matrix(x, dtype)))
  return Eigen(values=jnp.maximum(s, 0.0), vectors=v)


@functools.partial(jax.jit, static_argnames=("xi",))
def sweep_params(eigen: Eigen, lam: float, xi: float) -> tuple[SweepParams, jax.Array]:
  """Scoring parameters of the model at (lambda, xi) and its number of active constraints.

  xi = 1: LAE, xi = 0: EASE, 0 < xi < 1: RLAE (see closed_forms.relaxed_b).
  """
  weights = 1.0 / (eigen.values + lam)
  p_diag = jnp.matmul(eigen.vectors * eigen.vectors, weights, precision=HIGHEST)
  gamma = jnp.full_like(p_diag, lam)
  scale, active = closed_forms.diag_scale(p_diag, gamma, xi)
  return SweepParams(eigen.vectors, weights, scale), jnp.sum(active, dtype=jnp.int32)


def sweep_scores(params: SweepParams, fold_in: jax.Array) -> jax.Array:
  """Scores [batch, n] = X_u B(lambda) without forming B."""
  projected = jnp.matmul(fold_in, params.vectors, precision=HIGHEST) * params.weights
  return fold_in - jnp.matmul(projected, params.vectors.T, precision=HIGHEST) * params.scale


# --- the xi curve of RLAE / RDLAE from one inverse ---------------------------------------------
# C = (G + diagMat(gamma))^-1 does not depend on xi: the bound only moves mu, so B(xi) =
# I - C diagMat(gamma + mu(xi)) for every xi comes from one inverse and one column scale per xi.

class XiCurve(NamedTuple):
  xis: tuple             # the bounds, in order
  scales: np.ndarray     # [len(xis), n] gamma + mu(xi), the column scale of B(xi) = I - C diagMat(scale)
  num_active: np.ndarray  # [len(xis)] int, columns whose bound is tight (mu_j > 0)


def xi_inverse(x: sp.spmatrix, model: str, *, lam: float, p: float = 0.0, dtype=np.float32,
               method: str = "auto", backend: str | None = None,
               mesh: jax.sharding.Mesh | None = None) -> tuple[jax.Array, np.ndarray]:
  """C = (X^T X + diagMat(gamma))^-1 ([n, n] `dtype`) and gamma ([n] float64) of `model`'s
  regulariser ('rlae': gamma = lambda; 'rdlae': lambda + p/(1-p) diag(G)), solved once; mesh: see
  `linalg.inverse_with_diagonal`."""
  spec = closed_forms.model_spec(model)
  gamma = closed_forms.regulariser(linalg.item_counts(x), lam, p, spec.dropout)
  method = linalg.choose_method(x) if method == "auto" else method
  linalg.check_dense_fits(x.shape[1], dtype, method)
  c = linalg.inverse_with_diagonal(x, gamma, dtype=np.dtype(dtype), method=method,
                                   backend=backend or linalg.default_inverse_backend(), mesh=mesh)
  return jnp.asarray(c, dtype=dtype), gamma


def xi_curve(c_diag: np.ndarray, gamma: np.ndarray, xis) -> XiCurve:
  """Column scales gamma + mu(xi) of B(xi) for every xi, from diag(C) [n] and gamma [n].

  xi = 0 is the zero-diagonal model (EASE / EDLAE), xi = 1 the free one (LAE / DLAE).
  """
  c_diag, gamma = jnp.asarray(c_diag), jnp.asarray(gamma, jnp.asarray(c_diag).dtype)
  xis = tuple(float(xi) for xi in xis)
  if any(not 0.0 <= xi <= 1.0 for xi in xis):
    raise ValueError(f"every xi must be in [0, 1], got {xis}")
  scales, active = zip(*(closed_forms.diag_scale(c_diag, gamma, xi) for xi in xis))
  return XiCurve(xis, np.stack([np.asarray(s) for s in scales]),
                 np.array([int(jnp.sum(a)) for a in active]))


def xi_b(c: jax.Array, scale: np.ndarray) -> jax.Array:
  """B(xi) = I - C diagMat(scale) ([n, n]; C is kept, unlike closed_forms.relaxed_b)."""
  return jnp.eye(c.shape[0], dtype=c.dtype) - c * jnp.asarray(scale, c.dtype)[None, :]


def xi_scores(fold_in: np.ndarray, fold_in_c: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """Scores [b, n] = X_u B(xi) = X_u - (X_u C) diagMat(scale), from X_u C computed once for all xi."""
  return fold_in - fold_in_c * scale.astype(fold_in_c.dtype)[None, :]
