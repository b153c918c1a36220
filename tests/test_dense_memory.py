"""The LAE solve refuses, before allocating, a dense [n, n] matrix larger than the memory available."""

import numpy as np
import pytest
import scipy.sparse as sp

from lae_jax import linalg, solve
from recsys_core.errors import ConfigError


def test_refuses_before_allocating(monkeypatch):
  x = sp.csr_matrix(np.eye(300, dtype=np.float32))
  monkeypatch.setattr(linalg, "available_memory_bytes", lambda: 300 * 300 * 4 - 1)
  monkeypatch.setattr(linalg, "inverse_with_diagonal",
                      lambda *a, **k: pytest.fail("allocated despite the refusal"))
  for method in ("direct", "woodbury", "auto"):
    with pytest.raises(ConfigError, match=r"solve_method=.* 300 x 300 float32 .*GiB"):
      solve.fit(x, "ease", lam=1.0, method=method)


def test_fits_when_memory_suffices(monkeypatch):
  x = sp.csr_matrix(np.eye(30, dtype=np.float32))
  monkeypatch.setattr(linalg, "available_memory_bytes", lambda: 30 * 30 * 4)
  b, _ = solve.fit(x, "ease", lam=1.0)
  assert b.shape == (30, 30)
  monkeypatch.setattr(linalg, "available_memory_bytes", lambda: None)   # unknown: no refusal
  solve.fit(x, "ease", lam=1.0)


def test_available_memory_is_read():
  available = linalg.available_memory_bytes()
  assert available is None or available > 0
