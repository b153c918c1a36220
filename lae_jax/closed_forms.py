"""Closed forms of the linear-autoencoder family, all from one relaxed-diagonal solution.

Moon, Kim, Lee, "It's Enough: Relaxing Diagonal Constraints in Linear Autoencoders for
Recommendation" (SIGIR'23). With G = X^T X, a diagonal regulariser gamma and C = (G + diagMat(gamma))^-1,
the solution of  min_B ||X - XB||^2 + ||diagMat(gamma)^(1/2) B||^2  s.t.  diag(B) <= xi  is

    B = I - C diagMat(gamma + mu),   mu_j = max(0, (1 - xi) / C_jj - gamma_j).

xi = 1 leaves the diagonal free (LAE: gamma = lambda; DLAE: gamma = lambda + p/(1-p) diag(G)),
xi = 0 forces diag(B) = 0 (EASE, EDLAE: gamma + mu = 1 / diag(C)), 0 < xi < 1 is RLAE / RDLAE.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from recsys_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Which regulariser and which diagonal constraint a family member uses."""
  dropout: bool            # gamma = lambda + p/(1-p) diag(G) (DLAE family) instead of lambda
  diag_bound: str          # 'free' (xi=1), 'zero' (xi=0) or 'relaxed' (xi from the config)


MODELS = {
    "lae": ModelSpec(dropout=False, diag_bound="free"),
    "ease": ModelSpec(dropout=False, diag_bound="zero"),
    "rlae": ModelSpec(dropout=False, diag_bound="relaxed"),
    "dlae": ModelSpec(dropout=True, diag_bound="free"),
    "edlae": ModelSpec(dropout=True, diag_bound="zero"),
    "rdlae": ModelSpec(dropout=True, diag_bound="relaxed"),
}


def model_spec(name: str) -> ModelSpec:
  if name not in MODELS:
    raise ConfigError(f"unknown LAE model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name]


def effective_xi(name: str, xi: float) -> float:
  """xi the model really uses: 1 for free-diagonal models, 0 for zero-diagonal ones."""
  bound = model_spec(name).diag_bound
  return {"free": 1.0, "zero": 0.0}.get(bound, float(xi))


def regulariser(item_counts: np.ndarray, lam: float, p: float, dropout: bool) -> np.ndarray:
  """gamma: [n] float64. lambda, or lambda + p/(1-p) diag(G) for dropout (diag(G) = item counts)."""
  counts = np.asarray(item_counts, np.float64)
  if not dropout:
    return np.full(counts.shape, float(lam))
  if not 0.0 <= p < 1.0:
    raise ConfigError(f"dropout probability p must be in [0, 1), got {p}")
  return lam + p / (1.0 - p) * counts


def diag_scale(c_diag: jax.Array, gamma: jax.Array, xi: float) -> tuple[jax.Array, jax.Array]:
  """The column scale s = gamma + mu of B = I - C diagMat(s), and the active-constraint mask.

  Args:
    c_diag: [n] diag(C). gamma: [n]. xi: diagonal bound in [0, 1].
  Returns:
    scale [n] and active [n] bool (mu_j > 0: the bound diag(B)_j = xi is tight).
  """
  if xi <= 0.0:  # exact EASE/EDLAE: diag(B) = 1 - C_jj / C_jj = 0
    scale = 1.0 / c_diag
    return scale, jnp.ones_like(c_diag, dtype=bool)
  mu = jnp.maximum(0.0, (1.0 - xi) / c_diag - gamma)
  return gamma + mu, mu > 0


@functools.partial(jax.jit, static_argnames=("xi",), donate_argnums=(0,))
def relaxed_b(c: jax.Array, gamma: jax.Array, xi: float) -> tuple[jax.Array, jax.Array]:
  """B = I - C diagMat(gamma + mu) from C = (G + diagMat(gamma))^-1, written over C's buffer.

  Args:
    c: [n, n] float32/64 inverse (donated). gamma: [n] same dtype. xi: static bound in [0, 1].
  Returns:
    B [n, n] and the number of active diagonal constraints (int32 scalar).
  """
  c_diag = jnp.diagonal(c)
  scale, active = diag_scale(c_diag, gamma, xi)
  b = -c * scale[None, :]
  b = b + jnp.eye(c.shape[0], dtype=c.dtype)
  return b, jnp.sum(active, dtype=jnp.int32)
