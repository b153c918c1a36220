"""Dropout with masks from a counter-based integer hash (drop-in for flax.linen.Dropout).

Why: on a CPU, threefry (JAX's default generator behind `nn.Dropout`) is expensive per element, and
the T5 of GRAM draws ~35M mask elements per training step (attention weights and feed-forward
activations of 6 prompts x 64 tokens x 64 examples), so generating threefry masks takes about half
of that step (benchmarks/results/dropout_speed.md). Here one threefry call draws a 64-bit seed per
dropout site, and each element's mask bit is a hash of (its flat index, the seed): the lowbias32
integer hash (C. Wellons' `hash-prospector`), applied twice with the two seed words. It fuses into
the surrounding computation, far cheaper than threefry masks, and, a pure function of the global
index, gives the same mask on any sharding of the array. A keep threshold in units of 2^-32
makes the keep rate exact to 2^-32.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def lowbias32(x: jax.Array) -> jax.Array:
  """uint32 -> uint32 integer hash with low avalanche bias (shifts 16/15/16)."""
  x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def keep_mask(key: jax.Array, shape: tuple, rate: float) -> jax.Array:
  """bool `shape` mask, each element True with probability 1 - rate, from `key`.

  Args:
    key: a PRNG key (seeds the whole mask).
    shape: mask shape (fewer than 2^32 elements).
    rate: drop probability in [0, 1].
  """
  size = int(np.prod(shape))
  if size >= 2**32:
    raise ValueError(f"dropout mask of {size} elements: at most 2^32 - 1 are supported")
  seed = jax.random.bits(key, (2,), jnp.uint32)
  index = jax.lax.iota(jnp.uint32, size).reshape(shape)
  bits = lowbias32(lowbias32(index + seed[0]) ^ seed[1])
  threshold = min(int(round(rate * 2**32)), 2**32 - 1)
  return bits >= jnp.uint32(threshold)


class Dropout(nn.Module):
  """flax.linen.Dropout's behaviour (inverted dropout: kept values scaled by 1 / (1 - rate)) with
  `keep_mask` masks; draws from the 'dropout' rng collection."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    keep = keep_mask(self.make_rng("dropout"), x.shape, self.rate)
    return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)
