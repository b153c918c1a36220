"""K-means (Lloyd's algorithm) with greedy k-means++ seeding and restarts, jit-compiled.

GRAM's hierarchical indexing clusters item embeddings with scikit-learn's k-means (Euclidean,
`init='k-means++'`, `max_iter=300`, `tol=1e-7`, `n_init=100`, MiniBatchKMeans for nodes of >= 1000
items). We run full-batch Lloyd everywhere (no mini-batches), with the same seeding and stopping
rule as scikit-learn:
  - greedy k-means++: each new centre is the best of 2 + int(ln k) candidates drawn with
    probability proportional to the squared distance to the nearest chosen centre (best = lowest
    resulting potential);
  - stop after `max_iters` updates or when the summed squared centre shift is <= tol * mean
    per-feature variance of the data (scikit-learn's relative tolerance); labels and inertia
    are then recomputed from the final centres;
  - the restart of lowest inertia (sum of squared distances to the assigned centre) wins.
An empty cluster keeps its previous centre (scikit-learn moves it to a far point instead; with
k-means++ seeding clusters rarely empty).

Shapes vary per node of the hierarchy, so points are padded to a few bucket sizes with weight 0
(one compilation per bucket, not per node); padded rows are never chosen as centres and never
move one. Restarts run in parallel (vmap).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from recsys_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class KMeansResult:
  """centroids: [k, d] float32; labels: [n] int32 in 0..k-1; inertia: sum of squared distances
  of the points to their centroid; iterations: Lloyd updates of the winning restart."""
  centroids: np.ndarray
  labels: np.ndarray
  inertia: float
  iterations: int


def _sq_dist(x: jax.Array, x_sq: jax.Array, c: jax.Array) -> jax.Array:
  """[n, k] squared Euclidean distances of x [n, d] (x_sq = |x|^2 [n]) to c [k, d]."""
  d = x_sq[:, None] - 2.0 * (x @ c.T) + jnp.sum(c * c, axis=-1)[None, :]
  return jnp.maximum(d, 0.0)


def _kmeans_plus_plus(key, x, x_sq, weight, k: int, num_trials: int) -> jax.Array:
  """[k, d] greedy k-means++ seeds among the points of weight > 0."""
  real = jnp.where(weight > 0, 0.0, -jnp.inf)  # uniform logits over the real points
  key, sub = jax.random.split(key)
  first = jax.random.categorical(sub, real)
  centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  closest = _sq_dist(x, x_sq, x[first][None])[:, 0] * weight

  def add_center(i, carry):
    centers, closest, key = carry
    key, sub = jax.random.split(key)
    # All potential zero (fewer distinct points than k): fall back to uniform over real points.
    logits = jnp.where(closest.sum() > 0, jnp.log(closest), real)
    candidates = jax.random.categorical(sub, logits, shape=(num_trials,))
    trial = jnp.minimum(closest[:, None], _sq_dist(x, x_sq, x[candidates]) * weight[:, None])
    best = jnp.argmin(trial.sum(axis=0))
    return centers.at[i].set(x[candidates[best]]), trial[:, best], key

  centers, _, _ = jax.lax.fori_loop(1, k, add_center, (centers, closest, key))
  return centers


def _lloyd(x, x_sq, weight, centers, max_iters: int, tol):
  """Lloyd updates from `centers`; returns (centers [k, d], labels [n], inertia, iterations)."""
  k = centers.shape[0]

  def update(state):
    it, c, _ = state
    labels = jnp.argmin(_sq_dist(x, x_sq, c), axis=1)
    onehot = jax.nn.one_hot(labels, k, dtype=x.dtype) * weight[:, None]
    counts = onehot.sum(axis=0)
    means = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
    new = jnp.where(counts[:, None] > 0, means, c)
    return it + 1, new, jnp.sum((new - c) ** 2)

  def not_done(state):
    it, _, shift = state
    return (it < max_iters) & (shift > tol)

  it, centers, _ = jax.lax.while_loop(not_done, update, (0, centers, jnp.inf))
  dist = _sq_dist(x, x_sq, centers)
  labels = jnp.argmin(dist, axis=1)
  inertia = jnp.sum(jnp.min(dist, axis=1) * weight)
  return centers, labels, inertia, it


@functools.partial(jax.jit, static_argnames=("k", "num_restarts", "max_iters"))
def _kmeans_padded(key, x, weight, tol, *, k: int, num_restarts: int, max_iters: int):
  """Best of `num_restarts` k-means runs on the weighted points x [n, d] (weight [n] in {0, 1})."""
  x_sq = jnp.sum(x * x, axis=-1)
  num_trials = 2 + int(np.log(k))

  def one_run(key):
    seeds = _kmeans_plus_plus(key, x, x_sq, weight, k, num_trials)
    return _lloyd(x, x_sq, weight, seeds, max_iters, tol)

  centers, labels, inertia, iters = jax.vmap(one_run)(jax.random.split(key, num_restarts))
  best = jnp.argmin(inertia)
  return centers[best], labels[best], inertia[best], iters[best]


def bucket_size(n: int) -> int:
  """Padded row count for n points: the next power of two up to 1024, then multiples of 1024."""
  if n <= 1024:
    return max(8, 1 << (n - 1).bit_length())
  return -(-n // 1024) * 1024


def kmeans(x: np.ndarray, k: int, key: Union[int, jax.Array] = 0, num_restarts: int = 10,
           max_iters: int = 300, tol: float = 1e-7) -> KMeansResult:
  """Euclidean k-means of the rows of x.

  Args:
    x: [n, d] float points, n >= k.
    k: number of clusters.
    key: a jax PRNG key or an int seed; the result is a pure function of (x, k, key, settings).
    num_restarts: k-means++ seedings tried (the official code uses 100, see the module docstring).
    max_iters: Lloyd updates at most.
    tol: relative tolerance on the summed squared centre shift (scikit-learn's `tol`).
  """
  x = np.asarray(x, np.float32)
  n, d = x.shape
  if k < 1 or n < k:
    raise ConfigError(f"k-means needs 1 <= k <= n points; got k={k}, n={n}")
  if isinstance(key, int):
    key = jax.random.PRNGKey(key)
  size = bucket_size(n)
  padded = np.zeros((size, d), np.float32)
  padded[:n] = x
  weight = np.zeros(size, np.float32)
  weight[:n] = 1.0
  tol_abs = np.float32(tol * np.mean(np.var(x, axis=0)))
  centers, labels, inertia, iters = _kmeans_padded(
      key, padded, weight, tol_abs, k=k, num_restarts=num_restarts, max_iters=max_iters)
  return KMeansResult(centroids=np.asarray(centers), labels=np.asarray(labels[:n], np.int32),
                      inertia=float(inertia), iterations=int(iters))
