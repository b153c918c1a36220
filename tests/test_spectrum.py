"""Principal-direction gains v_k^T B v_k: the LAE identity s / (s + lambda), and the head share."""

import numpy as np
import scipy.sparse as sp

from lae_jax import solve, spectrum


def _interactions(num_users=200, num_items=50, seed=0):
  rng = np.random.default_rng(seed)
  popularity = 0.08 * np.geomspace(0.2, 5.0, num_items)
  return sp.csr_matrix((rng.random((num_users, num_items)) < popularity).astype(np.float32))


def test_lae_gain_is_the_low_pass_filter():
  x = _interactions()
  principal = spectrum.principal_directions(x)
  assert np.all(np.diff(principal.values) <= 1e-9)            # descending
  b, _ = solve.fit(x, "lae", lam=30.0)
  gains = spectrum.principal_gains(np.asarray(b), principal.vectors)
  np.testing.assert_allclose(gains, principal.values / (principal.values + 30.0), atol=2e-5)


def test_ease_gain_differs_and_head_share_sums():
  x = _interactions()
  principal = spectrum.principal_directions(x)
  b, _ = solve.fit(x, "ease", lam=30.0)
  gains = spectrum.principal_gains(np.asarray(b), principal.vectors)
  # diag(B) = 0 means trace(B) = sum of the gains = 0.
  assert abs(gains.sum()) < 1e-3
  head = np.zeros(50, bool)
  head[-10:] = True
  share = spectrum.head_share(principal.vectors, head)
  np.testing.assert_allclose(share + spectrum.head_share(principal.vectors, ~head), 1.0, atol=1e-12)
  assert share[0] > 0.5       # the first direction is the popularity one: mostly head items


def test_directions_from_the_users_side_equal_the_items_side():
  # Fewer users than items (gowalla's shape): K = X X^T has G's non-zero eigenvalues, and
  # X^T u_k / sqrt(s_k) is G's eigenvector v_k up to sign.
  x = _interactions(num_users=40, num_items=60, seed=1)
  dense = spectrum.principal_directions(x)
  ranks = np.array([0, 3, 10, 25])
  users = spectrum.principal_directions_from_users(x, ranks)
  np.testing.assert_allclose(users.values, dense.values[:40], rtol=1e-4, atol=1e-3)
  overlap = np.abs(np.einsum("ik,ik->k", users.vectors, dense.vectors[:, ranks]))
  np.testing.assert_allclose(overlap, 1.0, atol=1e-4)
  b, _ = solve.fit(x, "ease", lam=5.0)
  np.testing.assert_allclose(spectrum.principal_gains(np.asarray(b, np.float32), users.vectors),
                             spectrum.principal_gains(np.asarray(b), dense.vectors)[ranks],
                             atol=1e-4)
  rank = int((dense.values > 1e-9).sum())
  with np.testing.assert_raises_regex(ValueError, "eigenvalue 0"):
    spectrum.principal_directions_from_users(x, np.array([rank]))


def test_every_mth_direction_keeps_the_first_hundred():
  x = _interactions(num_users=150, num_items=200, seed=2)
  principal = spectrum.principal_directions_from_users(x, 20)
  rank = int((principal.values > 0).sum())
  want = np.union1d(np.arange(100), np.arange(0, rank, 20))
  np.testing.assert_array_equal(principal.ranks, want)
  np.testing.assert_allclose(np.linalg.norm(principal.vectors, axis=0), 1.0, atol=1e-4)
