"""How much of each principal direction of X a linear autoencoder passes through.

With G = X^T X = V diagMat(s) V^T (s descending: v_1 is the first principal direction of the items),
the gain of B along v_k is v_k^T B v_k. For LAE, B = (G + lambda I)^-1 G = V diagMat(s / (s + lambda)) V^T,
so the gain is s_k / (s_k + lambda): a smooth low-pass filter. A diagonal constraint (EASE, RLAE) or a
dropout regulariser (DLAE) reshapes it; benchmarks/lae_spectrum.py measures how.
A direction is "head" or "tail" by where its mass lies: the share of ||v_k||^2 on the head items.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from lae_jax import linalg


class Principal(NamedTuple):
  values: np.ndarray    # [n] eigenvalues s of G, descending
  vectors: np.ndarray   # [n, n] float64, column k is v_k


def principal_directions(x: sp.spmatrix) -> Principal:
  """Eigendecomposition of G = X^T X in float64, directions in decreasing eigenvalue order (dense
  [n, n]: for catalogues of a few thousand items)."""
  s, v = np.linalg.eigh(linalg.gram_matrix(x, np.float64))
  order = np.argsort(s)[::-1]
  return Principal(np.maximum(s[order], 0.0), v[:, order])


def principal_gains(b: np.ndarray, vectors: np.ndarray) -> np.ndarray:
  """[n] v_k^T B v_k for every column v_k of `vectors` ([n, n]): diag(V^T B V)."""
  b = np.asarray(b, np.float64)
  return np.einsum("ik,ik->k", vectors, b @ vectors)


def head_share(vectors: np.ndarray, head_items: np.ndarray) -> np.ndarray:
  """[n] share of ||v_k||^2 (= 1) on the head items, for every column v_k."""
  return (vectors[np.asarray(head_items, bool)] ** 2).sum(axis=0)
