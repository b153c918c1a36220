"""A Flax LLaMA-family decoder (Hugging Face `LlamaForCausalLM` numerics), for hidden-state features.

Pre-norm blocks: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)), MLP = down(silu(gate(x)) * up(x)).
Attention: causal, rotary position embeddings in HF's half-split layout (rotate_half, theta from
the checkpoint), grouped-query attention (`num_kv_heads` K/V heads, each shared by
num_heads / num_kv_heads query heads), no biases. The LM head is the token embedding when tied.
Padding is on the right, so real tokens never see it (causal) and positions are 0..length-1.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from recsys_core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  vocab_size: int = 49152
  hidden: int = 576
  num_layers: int = 30
  num_heads: int = 9
  num_kv_heads: int = 3
  head_dim: int = 64
  intermediate: int = 1536
  rope_theta: float = 100000.0
  rms_eps: float = 1e-5
  tie_embeddings: bool = True


def resolve_layer(layer: Optional[int], num_layers: int) -> int:
  """Number of blocks to run: None -> num_layers; negative k -> num_layers + 1 + k (so -1 is the
  final norm's output, as HF's hidden_states[-1])."""
  resolved = num_layers if layer is None else layer + num_layers + 1 if layer < 0 else layer
  if not 0 <= resolved <= num_layers:
    raise ConfigError(f"layer {layer} outside -{num_layers + 1}..{num_layers} (config.layer)")
  return resolved


class RMSNorm(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale * x32.astype(x.dtype)


def rope(x: jnp.ndarray, theta: float) -> jnp.ndarray:
  """Rotary embedding of x [batch, seq_len, heads, head_dim] at positions 0..seq_len-1; dimension i
  pairs with i + head_dim/2 (HF rotate_half)."""
  half = x.shape[-1] // 2
  inv_freq = 1.0 / theta ** (np.arange(0, half, dtype=np.float32) * 2 / x.shape[-1])
  angles = np.arange(x.shape[1], dtype=np.float32)[:, None] * inv_freq[None, :]  # [seq_len, half]
  cos = jnp.asarray(np.concatenate([np.cos(angles)] * 2, axis=-1))[None, :, None, :]
  sin = jnp.asarray(np.concatenate([np.sin(angles)] * 2, axis=-1))[None, :, None, :]
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin


class Attention(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, x: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
    """x [batch, seq_len, hidden]; bias [batch, 1, seq_len, seq_len] additive (causal + padding)."""
    c = self.config
    dense = lambda n, f: nn.Dense(f, use_bias=False, name=n)
    b, t = x.shape[:2]
    q = dense("q_proj", c.num_heads * c.head_dim)(x).reshape(b, t, c.num_heads, c.head_dim)
    k = dense("k_proj", c.num_kv_heads * c.head_dim)(x).reshape(b, t, c.num_kv_heads, c.head_dim)
    v = dense("v_proj", c.num_kv_heads * c.head_dim)(x).reshape(b, t, c.num_kv_heads, c.head_dim)
    q, k = rope(q, c.rope_theta), rope(k, c.rope_theta)
    # Query head h reads K/V head h // group (HF repeat_kv).
    group = c.num_heads // c.num_kv_heads
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(c.head_dim) + bias
    out = jnp.einsum("bhqk,bkhd->bqhd", nn.softmax(scores, axis=-1), v)
    return dense("o_proj", c.hidden)(out.reshape(b, t, c.num_heads * c.head_dim))


class Block(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, x: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
    c = self.config
    x = x + Attention(c, name="attention")(RMSNorm(c.rms_eps, name="attention_norm")(x), bias)
    h = RMSNorm(c.rms_eps, name="mlp_norm")(x)
    gate = nn.Dense(c.intermediate, use_bias=False, name="gate_proj")(h)
    up = nn.Dense(c.intermediate, use_bias=False, name="up_proj")(h)
    return x + nn.Dense(c.hidden, use_bias=False, name="down_proj")(nn.silu(gate) * up)


class Llama(nn.Module):
  """Decoder-only LM. `__call__` gives hidden states, `logits` the next-token scores."""

  config: LlamaConfig

  def setup(self):
    c = self.config
    self.embed_tokens = nn.Embed(c.vocab_size, c.hidden)
    self.blocks = [Block(c, name=f"block_{i}") for i in range(c.num_layers)]
    self.norm = RMSNorm(c.rms_eps)
    if not c.tie_embeddings:
      self.lm_head = nn.Dense(c.vocab_size, use_bias=False)

  def __call__(self, ids: jnp.ndarray, mask: jnp.ndarray, layer: Optional[int] = None
               ) -> jnp.ndarray:
    """ids, mask [batch, seq_len] (mask 1 = real token, padding on the right) ->
    [batch, seq_len, hidden] float32 hidden states.

    layer: None or num_layers -> the final RMSNorm's output (HF's last hidden_states entry);
      0 <= layer < num_layers -> the residual stream after `layer` blocks (HF hidden_states[layer]);
      negative values count from num_layers (-1 = the final norm's output). Static.
    """
    c = self.config
    layer = resolve_layer(layer, c.num_layers)
    t = ids.shape[1]
    causal = np.tril(np.ones((t, t), bool))[None, None]
    allowed = causal & (mask[:, None, None, :] > 0)
    x = self.embed_tokens(ids)
    bias = jnp.where(allowed, 0.0, jnp.finfo(x.dtype).min).astype(x.dtype)
    for block in self.blocks[:layer]:
      x = block(x, bias)
    return self.norm(x) if layer == c.num_layers else x

  def logits(self, ids: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """[batch, seq_len, vocab_size] float32 next-token logits."""
    h = self(ids, mask)
    if self.config.tie_embeddings:
      return self.embed_tokens.attend(h)
    return self.lm_head(h)
