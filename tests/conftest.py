"""Shared fixtures: where the real benchmark data lives; one JAX compilation cache for the session."""

import os
import tempfile

# Many tests launch `launch.py` in subprocesses that compile the same small models again; one
# persistent compilation cache for the whole session (this process and every subprocess, which
# inherit the environment) compiles each program once. Set before JAX is imported.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="recsys-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

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
