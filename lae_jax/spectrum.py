"""How much of each principal direction of X a linear autoencoder passes through.

With G = X^T X = V diagMat(s) V^T (s descending: v_1 is the first principal direction of the items),
the gain of B along v_k is v_k^T B v_k. For LAE, B = (G + lambda I)^-1 G = V diagMat(s / (s + lambda)) V^T,
so the gain is s_k / (s_k + lambda): a smooth low-pass filter. A diagonal constraint (EASE, RLAE) or a
dropout regulariser (DLAE) reshapes it; benchmarks/lae_spectrum.py measures how.
A direction is "head" or "tail" by where its mass lies: the share of ||v_k||^2 on the head items.

Large catalogues (gowalla: 41k items, 30k users): `principal_directions_from_users` takes the
eigendecomposition of the users x users K = X X^T = U diagMat(s) U^T instead (the same non-zero s),
and forms only the asked-for directions v_k = X^T u_k / sqrt(s_k).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from lae_jax import linalg


class Principal(NamedTuple):
  values: np.ndarray    # [r] eigenvalues s of G, descending
  vectors: np.ndarray   # [n, len(ranks)], column j is v_{ranks[j]}
  ranks: np.ndarray     # [len(ranks)] int, 0-based ranks of the columns of `vectors`


def principal_directions(x: sp.spmatrix) -> Principal:
  """Eigendecomposition of G = X^T X in float64, directions in decreasing eigenvalue order (dense
  [n, n]: for catalogues of a few thousand items)."""
  s, v = np.linalg.eigh(linalg.gram_matrix(x, np.float64))
  order = np.argsort(s)[::-1]
  return Principal(np.maximum(s[order], 0.0), v[:, order], np.arange(len(s)))


def principal_directions_from_users(x: sp.spmatrix, ranks) -> Principal:
  """The directions v_k of G = X^T X at 0-based `ranks` (each < the number of positive
  eigenvalues; an int m: the first 100 and then every m-th, where the gains change slowly) from
  the float32 eigendecomposition of K = X X^T ([users, users] dense).

  Returns: values [users] eigenvalues of K (those of G, without G's extra zeros), descending;
  vectors [items, len(ranks)] float32 unit columns v_k = X^T u_k / sqrt(s_k).
  """
  import scipy.linalg  # pylint: disable=import-outside-toplevel
  k = (x @ x.T).astype(np.float32).toarray()
  s, u = scipy.linalg.eigh(k, driver="evd", overwrite_a=True, check_finite=False)
  del k
  order = np.argsort(s)[::-1]
  s = np.maximum(s[order], 0.0)
  if np.isscalar(ranks):
    positive = int((s > 0).sum())
    ranks = np.union1d(np.arange(min(100, positive)), np.arange(0, positive, ranks))
  ranks = np.asarray(ranks)
  if ranks.size and (ranks.max() >= len(s) or s[ranks.max()] <= 0):
    raise ValueError(f"rank {ranks.max()} has eigenvalue 0: X has rank {int((s > 0).sum())}")
  u_ranks = u[:, order[ranks]]
  del u
  vectors = np.asarray(x.T @ u_ranks, np.float32) / np.sqrt(s[ranks]).astype(np.float32)
  return Principal(s, vectors, ranks)


def principal_gains(b: np.ndarray, vectors: np.ndarray) -> np.ndarray:
  """[m] v_k^T B v_k for every column v_k of `vectors` ([n, m]): diag(V^T B V), in the wider of
  the two dtypes (float32 B and vectors keep a gowalla-size product in float32)."""
  dtype = np.result_type(b.dtype, vectors.dtype)
  vectors = np.asarray(vectors, dtype)
  return np.einsum("ik,ik->k", vectors, np.asarray(b, dtype) @ vectors)


def head_share(vectors: np.ndarray, head_items: np.ndarray) -> np.ndarray:
  """[n] share of ||v_k||^2 (= 1) on the head items, for every column v_k."""
  return (vectors[np.asarray(head_items, bool)] ** 2).sum(axis=0)
