"""Anisotropy of an embedding matrix E [n, d] (rows = items): how much the vectors crowd into a
narrow cone / few directions. The one home of these metrics (ACE diagnostics, embedding reports).

  mean_pairwise_cosine   mean cos(e_i, e_j) over pairs i != j (0 for isotropic, -> 1 for a cone)
  singular_values        the spectrum of E (not centred, as ACE's E = U S V^T)
  top_k_share            share of the k largest singular values in their sum (power 1) or in
                         the energy sum s^2 (power 2)
  effective_rank         exp(entropy of s / sum(s)) (Roy & Vetterli 2007): d for a flat spectrum, 1
                         for rank one
  uniformity             log mean exp(-t ||u_i - u_j||^2) over pairs of unit rows (Wang & Isola
                         2020): lower = more uniform on the sphere

All take numpy-convertible arrays and compute in float64 on the host.
"""

from __future__ import annotations

import numpy as np


def _unit_rows(e) -> np.ndarray:
  """Rows scaled to unit norm (float64); all-zero rows are refused (no direction)."""
  e = np.asarray(e, np.float64)
  if e.ndim != 2 or e.shape[0] < 2:
    raise ValueError(f"need a matrix [n >= 2, d], got shape {e.shape}")
  norms = np.linalg.norm(e, axis=1, keepdims=True)
  if (norms == 0).any():
    raise ValueError(f"{int((norms == 0).sum())} all-zero rows have no direction")
  return e / norms


def mean_pairwise_cosine(e) -> float:
  """Exact mean of cos(e_i, e_j) over the n(n-1) ordered pairs i != j, in O(n d):
  sum_{i,j} u_i.u_j = ||sum_i u_i||^2, minus the n diagonal ones."""
  u = _unit_rows(e)
  n = u.shape[0]
  total = u.sum(axis=0)
  return float((total @ total - n) / (n * (n - 1)))


def sampled_mean_pairwise_cosine(e, num_pairs: int = 100_000, seed: int = 0
                                 ) -> tuple[float, float]:
  """(estimate, standard error) of `mean_pairwise_cosine` from `num_pairs` uniform pairs i != j."""
  u = _unit_rows(e)
  rng = np.random.default_rng(seed)
  n = u.shape[0]
  i = rng.integers(0, n, num_pairs)
  j = (i + rng.integers(1, n, num_pairs)) % n  # uniform over j != i
  cos = np.einsum("pd,pd->p", u[i], u[j])
  return float(cos.mean()), float(cos.std(ddof=1) / np.sqrt(num_pairs))


def singular_values(e) -> np.ndarray:
  """[min(n, d)] float64 singular values of E, descending."""
  return np.linalg.svd(np.asarray(e, np.float64), compute_uv=False)


def top_k_share(s, k: int = 10, power: int = 1) -> float:
  """sum(s[:k]^power) / sum(s^power) of descending singular values `s`."""
  s = np.asarray(s, np.float64) ** power
  return float(s[:k].sum() / s.sum())


def effective_rank(s) -> float:
  """exp(-sum p log p) with p = s / sum(s) (zero singular values contribute 0)."""
  s = np.asarray(s, np.float64)
  p = s[s > 0] / s.sum()
  return float(np.exp(-(p * np.log(p)).sum()))


def uniformity(e, t: float = 2.0, block: int = 1024) -> float:
  """log mean_{i<j} exp(-t ||u_i - u_j||^2) of the unit rows, exact, in row blocks (O(n^2 d))."""
  u = _unit_rows(e)
  n = u.shape[0]
  log_terms = []
  for start in range(0, n, block):
    gram = u[start:start + block] @ u.T  # [b, n]
    rows = np.arange(start, min(start + block, n))
    keep = np.arange(n)[None, :] > rows[:, None]  # pairs i < j
    x = -t * (2.0 - 2.0 * gram[keep])
    if x.size:
      m = x.max()
      log_terms.append(m + np.log(np.exp(x - m).sum()))
  log_total = np.logaddexp.reduce(np.array(log_terms))
  return float(log_total - np.log(n * (n - 1) / 2))


def report(e, k: int = 10) -> dict[str, float]:
  """The summary the project records for an embedding matrix (names as in results tables)."""
  s = singular_values(e)
  return {"mean_cosine": mean_pairwise_cosine(e), f"top{k}_sv_share": top_k_share(s, k),
          f"top{k}_energy_share": top_k_share(s, k, power=2), "effective_rank": effective_rank(s)}
