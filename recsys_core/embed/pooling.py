"""Pooling of token hidden states into one vector per text, padding masked.

Conventions: `hidden` [batch, seq_len, dim] float, `mask` [batch, seq_len] int/bool with 1 on real
tokens; padding is on the right (a text's tokens are positions 0..length-1).
"""

from __future__ import annotations

import jax.numpy as jnp
from recsys_core.errors import ConfigError

POOLINGS = ("mean", "last")


def mean_pool(hidden: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """[batch, dim] mean over real tokens, as sentence-transformers: sum / max(count, 1e-9)."""
  m = mask.astype(hidden.dtype)[..., None]
  return (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)


def last_token(hidden: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """[batch, dim] hidden state of each text's last real token (the one a causal LM has read
  the whole text at)."""
  last = jnp.maximum(mask.astype(jnp.int32).sum(axis=1) - 1, 0)
  return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]


def pool(hidden: jnp.ndarray, mask: jnp.ndarray, pooling: str) -> jnp.ndarray:
  if pooling == "mean":
    return mean_pool(hidden, mask)
  if pooling == "last":
    return last_token(hidden, mask)
  raise ConfigError(f"unknown pooling {pooling!r} (config.pooling); use one of {POOLINGS}")


def l2_normalize(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """Rows divided by max(norm, eps), as torch.nn.functional.normalize (sentence-transformers)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)
