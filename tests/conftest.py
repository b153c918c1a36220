"""Shared fixtures: where the real benchmark data lives."""

import os

import pytest


@pytest.fixture(scope="session")
def data_dir() -> str:
  """$RECSYS_DATA_DIR, default <repo>/../shared/data; skips the test when it is absent."""
  default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
  path = os.path.normpath(os.environ.get("RECSYS_DATA_DIR", default))
  if not os.path.isdir(path):
    pytest.skip(f"real data not found at {path} (set RECSYS_DATA_DIR)")
  return path
