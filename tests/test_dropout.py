"""recsys_core/dropout.py: keep rate, scaling, independence of masks, determinism, sharding invariance."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recsys_core import dropout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 1 << 20


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.9])
def test_keep_rate_matches_within_four_sigma(rate):
  keep = np.asarray(dropout.keep_mask(jax.random.PRNGKey(0), (N,), rate))
  assert abs(keep.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / N)


def test_masks_are_deterministic_per_key_and_uncorrelated_across_keys_and_neighbours():
  a = np.asarray(dropout.keep_mask(jax.random.PRNGKey(1), (1024, 1024), 0.5), np.float64)
  again = np.asarray(dropout.keep_mask(jax.random.PRNGKey(1), (1024, 1024), 0.5), np.float64)
  np.testing.assert_array_equal(a, again)
  bound = 5 / np.sqrt(a.size)  # correlations of independent fair bits: ~N(0, 1/n)
  for key in (2, 3):  # other keys, e.g. the next dropout site of a step
    b = np.asarray(dropout.keep_mask(jax.random.PRNGKey(key), (1024, 1024), 0.5), np.float64)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound
  flat = a.ravel()
  for lag in (1, 2, 1024):  # neighbours along a row and down a column
    assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < bound
  # per-bit balance of a mask at rate .5 (no stuck rows or columns)
  assert np.abs(a.mean(axis=0) - 0.5).max() < 5 * 0.5 / np.sqrt(1024)
  assert np.abs(a.mean(axis=1) - 0.5).max() < 5 * 0.5 / np.sqrt(1024)


def test_module_scales_kept_values_and_is_identity_when_deterministic_or_rate_zero():
  x = jnp.arange(1.0, 1.0 + N).reshape(1024, -1)
  out = dropout.Dropout(0.25).apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(0)})
  kept = np.asarray(out) != 0
  np.testing.assert_allclose(np.asarray(out)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
  assert abs(kept.mean() - 0.75) < 4 * np.sqrt(0.25 * 0.75 / N)
  assert dropout.Dropout(0.25).apply({}, x, True) is x
  assert dropout.Dropout(0.0).apply({}, x, False) is x
  np.testing.assert_array_equal(
      dropout.Dropout(1.0).apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(0)}), 0.0)


def test_two_sites_in_one_module_draw_different_masks():
  class Two(dropout.nn.Module):
    @dropout.nn.compact
    def __call__(self, x):
      return dropout.Dropout(0.5)(x, False), dropout.Dropout(0.5)(x, False)
  a, b = Two().apply({}, jnp.ones((256, 256)), rngs={"dropout": jax.random.PRNGKey(0)})
  assert 0.4 < float(jnp.mean((a != 0) == (b != 0))) < 0.6


def test_mask_is_the_same_on_8_sharded_devices():
  script = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from recsys_core import dropout
    mesh = jax.make_mesh((8,), ("data",))
    x = jax.device_put(np.ones((64, 48), np.float32), NamedSharding(mesh, P("data")))
    f = jax.jit(lambda x: dropout.Dropout(0.3).apply({}, x, False,
                                                       rngs={"dropout": jax.random.PRNGKey(4)}))
    sharded = np.asarray(f(x))
    single = np.asarray(f(np.ones((64, 48), np.float32)))
    print(int((sharded != single).sum()), len(f(x).sharding.device_set))
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["0", "8"]
