"""Shared fixtures: where the real benchmark data lives."""

import os

import jax
import pytest

# Tests compare against float32/float64 references; on a GPU a default-precision float32 product runs
# in TF32 (10-bit mantissa), so the whole session asks for full float32 on every backend. Code that
# needs full precision in production says so itself (lae_jax's scoring, lae_jax/ace.py).
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def data_dir() -> str:
  """$RECSYS_DATA_DIR, default <repo>/../shared/data; skips the test when it is absent."""
  default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
  path = os.path.normpath(os.environ.get("RECSYS_DATA_DIR", default))
  if not os.path.isdir(path):
    pytest.skip(f"real data not found at {path} (set RECSYS_DATA_DIR)")
  return path
