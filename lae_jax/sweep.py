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
