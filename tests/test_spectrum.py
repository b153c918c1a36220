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
