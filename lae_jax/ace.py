"""ACE: anisotropy-controllable reshaping of LLM item embeddings (Lee, Kim, Lee, SIGIR'26).

E: [items, d] LLM embeddings of the item text (L2-normalised rows, not centred). ACE fits the linear
autoencoder min_B ||E^T - E^T B||^2 + lambda ||B||^2 over items, B = (E E^T + lambda I)^-1 E E^T, and
takes the embedding whose Gram matrix is B: with E = U S V^T,

  E_ace = U g(S),   g(s) = sqrt(s^2 / (s^2 + lambda)),   so E_ace E_ace^T = B,

truncated to the top-k singular directions (k = the backbone's hidden size) and scaled to a global
standard deviation `scale` (official 0.1). lambda = 0 is full whitening (all kept singular values 1);
lambda -> inf gives g(s) ~ s / sqrt(lambda), the raw anisotropic spectrum up to a constant.

How it is computed (never the items x items matrix): the thin SVD comes from the d x d Gram matrix
E^T E = V S^2 V^T (one float32 GEMM of n d^2 flops and one d x d `eigh`), and

  E_ace = U_k g(S_k) = E V_k diagMat(1 / sqrt(s_k^2 + lambda))

since U = E V S^-1. No 1/s appears, so directions with tiny s are harmless for lambda > 0. Why not
`jnp.linalg.svd(E, full_matrices=False)`: same n d^2 order, but several passes over the [n, d] matrix
and an [n, d] U on top of E (a 100k x 4k catalogue: 1.6 GB each) against 64 MB for the Gram matrix.
float32 accuracy: eigenvalues of the Gram matrix carry an absolute error of about eps * s_1^2
(eps = 6e-8; s_1^2 <= items for unit rows, e.g. ~1e4 on Beauty), i.e. ~1e-3 << lambda = 50, so
g(s) is accurate to float32 for every kept direction whenever lambda >> eps * s_1^2. s_j^2 is taken
as the Rayleigh quotient ||E v_j||^2 of the computed eigenvector rather than eigh's eigenvalue (the
quotient's error is second order in the eigenvector's), which also keeps the lambda = 0 columns at
unit norm. Both products run at `Precision.HIGHEST`: accelerators' default float32 matmul (TF32 /
bf16 passes) would put a 1e-3 relative error into the Gram matrix. At lambda = 0 a kept direction
must have s_j^2 well above eps * s_1^2 (k <= the numerical rank of E).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from recsys_core.errors import ConfigError
from recsys_core.precision import HIGHEST


class Spectrum(NamedTuple):
  squared: jax.Array   # [d] s_j^2 of E, descending (Rayleigh quotients ||E v_j||^2)
  vectors: jax.Array   # [d, d] V, column j = right singular vector v_j


@jax.jit
def gram_spectrum(embeddings: jax.Array) -> Spectrum:
  """Right singular vectors and squared singular values of E from E^T E = V S^2 V^T.

  Args:
    embeddings: [n, d] float32 E.

  Returns:
    Spectrum with `squared` [d] descending and `vectors` [d, d] (float32).
  """
  e = embeddings.astype(jnp.float32)
  _, v = jnp.linalg.eigh(jnp.matmul(e.T, e, precision=HIGHEST))
  v = v[:, ::-1]
  squared = jnp.sum(jnp.square(jnp.matmul(e, v, precision=HIGHEST)), axis=0)
  return Spectrum(squared=squared, vectors=v)


def ace_gain(squared: jax.Array, lam: float) -> jax.Array:
  """g(s) = sqrt(s^2 / (s^2 + lambda)): the singular values of E_ace. squared: s^2 (any shape)."""
  squared = jnp.maximum(squared, 0.0)
  return jnp.sqrt(squared / (squared + lam))


@functools.partial(jax.jit, static_argnames=("k",))
def ace_embeddings(embeddings: jax.Array, lam: float, k: Optional[int] = None) -> jax.Array:
  """E_ace = U_k g(S_k) = E V_k diagMat((s_k^2 + lambda)^-1/2), unscaled.

  Args:
    embeddings: [n, d] E (cast to float32). ACE uses L2-normalised, uncentred rows.
    lam: lambda >= 0 (0 = full whitening of the kept directions).
    k: number of kept singular directions (static); None keeps all d (meaningful when n >= d).

  Returns:
    [n, k] float32, columns in order of decreasing singular value.
  """
  e = embeddings.astype(jnp.float32)
  spectrum = gram_spectrum(e)
  k = e.shape[1] if k is None else k
  projected = jnp.matmul(e, spectrum.vectors[:, :k], precision=HIGHEST)  # U_k S_k
  squared = jnp.sum(jnp.square(projected), axis=0)
  return projected * jax.lax.rsqrt(jnp.maximum(squared + lam, jnp.finfo(jnp.float32).tiny))


@jax.jit
def rescale_std(table: jax.Array, std: float) -> jax.Array:
  """`table` multiplied so that the standard deviation of all its entries is `std`."""
  return table * (std / jnp.std(table))


def ace_item_table(embeddings: jax.Array, lam: float, k: int, scale: float) -> jax.Array:
  """The ACE initial item table: E_ace truncated to k columns, at global std `scale` (> 0).

  Args:
    embeddings: [n, d] L2-normalised LLM item embeddings, k <= min(n, d).
    lam: lambda (official 50); k: backbone hidden size; scale: official 0.1.

  Returns:
    [n, k] float32.
  """
  n, d = embeddings.shape
  if not 0 < k <= min(n, d):
    raise ConfigError(f"ACE keeps k={k} singular directions of a [{n}, {d}] embedding matrix: "
                     f"need 0 < k <= min(items, dims) = {min(n, d)} (k = config.model.hidden)")
  if lam < 0 or scale <= 0:
    raise ConfigError(f"ACE needs lambda >= 0 and scale > 0, got lambda={lam}, scale={scale} "
                     "(config.init.lam, config.init.scale)")
  return rescale_std(ace_embeddings(jnp.asarray(embeddings), lam, k), scale)
