"""T5 v1.0 (Raffel et al., JMLR 2020) in Flax Linen, with GRAM's late fusion (Fusion-in-Decoder).

Facts taken from Hugging Face's `modeling_t5.py` for the v1.0 checkpoints (t5-small, t5-base:
`feed_forward_proj="relu"`, tied embeddings), all reproduced here (tests/test_t5_hf_parity.py):
- One token table `shared` [vocab, d_model] (init std 1.0) embeds encoder and decoder inputs and is
  the output layer: logits = (decoder_output * d_model**-0.5) @ shared^T.
- Pre-norm blocks. Encoder: x += Dropout(SelfAttention(RMSNorm(x))); x += Dropout(FF(RMSNorm(x))).
  Decoder: the same with a causal self-attention and, between the two, x += Dropout(CrossAttention(
  RMSNorm(x), encoder_output)). FF(x) = wo(Dropout(ReLU(wi(x)))). A stack is Dropout(embedding) ->
  blocks -> RMSNorm -> Dropout.
- RMSNorm: x / sqrt(mean(x^2) + 1e-6) * scale, no mean subtraction, no bias.
- Attention: q, k, v, o without bias, inner size heads * d_kv, and NO 1/sqrt(d_kv) on the logits:
  T5 folds it into the init of q (std (d_model * d_kv)**-0.5). Dropout on the attention weights.
- Relative position bias: one [num_buckets, heads] table per stack (HF keeps it in the first block;
  all blocks of the stack share its bias), added to the self-attention logits. Buckets of
  memory_position - query_position: the encoder's are bidirectional (half of the buckets for keys
  right of the query), the decoder's causal; in each half, distances below half the buckets are
  exact, larger ones logarithmic up to max_distance. Cross-attention has no position bias.
- Masked keys get float32-min added to their logits (HF), so a fully padded prompt yields finite,
  ignored outputs rather than NaN.
- Init (HF `_init_weights`, factor 1): wi std d_model**-0.5, wo d_ff**-0.5, k and v d_model**-0.5,
  o (heads * d_kv)**-0.5, position tables d_model**-0.5, norms 1.

Late fusion (GRAM, after FiD; the official `EncoderWrapper`): the input is N prompts per user,
[batch, N, L] token ids. ONE encoder encodes each prompt alone ([batch * N, L]); row n of a learned
prompt-position table (`num_prompt_positions` rows = 20 history items + 1 user prompt, std 0.02) is
added to every output vector of prompt n; the outputs are concatenated to [batch, N * L, d_model]
with their padding mask, and the decoder cross-attends to all of them. With
`num_prompt_positions=0` there is no table and N=1 is exactly Hugging Face's T5.

Distinct prompts (`T5.late_fusion` on a dict, built by `gram_jax.batching.distinct_inputs`): a
prompt's encoder output depends on its L tokens alone (the encoder sees no position outside the
prompt; the prompt-position row comes after it), so an item prompt that occurs in several slots
of a batch (a user's consecutive prefixes share all but one of them) is encoded once:
  user_prompts: [batch, L] the coarse prompts (slot 0, one per example);
  item_prompts: [G, U, L] the distinct item prompts of each of G groups of batch / G consecutive
                rows (G = devices, so the gather stays on each device), padded to U rows;
  prompt_index: [batch, N - 1] row of slot n's prompt in its group's item_prompts, -1 = absent.
The cross-attention keys and values are linear without bias, k(h + p_n) = k(h) + k(p_n), so they
are computed on the U distinct outputs and gathered to [batch, N * L, heads, d_kv] with k(p_n)
added: the decoder's memory equals the [batch, N, L] path's up to float rounding. Dropout: the
decoder's masks are the same; the encoder's are drawn per distinct row, so every slot holding one
prompt shares its mask (each slot's mask is still Bernoulli(1 - rate), so the expected loss is
unchanged; the slots of a batch are no longer independent).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recsys_core import dropout
from recsys_core.errors import ConfigError

NEG_INF = float(np.finfo(np.float32).min)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DISTINCT_KEYS = ("user_prompts", "item_prompts", "prompt_index")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Sizes of a T5 v1.0 encoder-decoder (defaults: t5-small) plus the late-fusion table."""
  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 2048
  num_layers: int = 6
  num_decoder_layers: int = 6
  num_heads: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-6
  # Rows of the prompt-position table (GRAM: max history 20 + the user prompt); 0 = plain T5.
  num_prompt_positions: int = 21
  # False: no table is added (the "w/o prompt-position embeddings" ablation); N stays bounded.
  prompt_position_embedding: bool = True
  pad_token_id: int = 0  # also T5's decoder start token
  eos_token_id: int = 1
  # Inputs of the matrix products: "float32", or "bfloat16" for accelerators (parameters, the
  # residual stream, norms, softmaxes and the loss stay float32; products accumulate in float32).
  dtype: str = "float32"

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ConfigError(f"T5 dtype={self.dtype!r}: use one of {', '.join(DTYPES)}")


SIZES = {
    "tiny": dict(d_model=64, d_kv=16, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4),
    "small": {},
    "base": dict(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12),
}


def t5_config(size: str = "small", **overrides: Any) -> T5Config:
  """The `size` preset ("tiny": CPU tests, "small": t5-small, "base": t5-base) with overrides."""
  if size not in SIZES:
    raise ConfigError(f"unknown T5 size {size!r}; choose one of {sorted(SIZES)}")
  return T5Config(**{**SIZES[size], **overrides})


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """T5's bucket of each memory_position - query_position (int array, any shape) -> int32 buckets.

  Computed on the host in float32 like the reference (shapes are static), so the buckets at the
  logarithmic boundaries are exactly Hugging Face's.
  """
  relative_position = np.asarray(relative_position, np.int64)
  buckets = np.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0) * num_buckets
    distance = np.abs(relative_position)
  else:
    distance = -np.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  ratio = np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact)
  large = max_exact + (np.log(ratio) / np.float32(math.log(max_distance / max_exact))
                       * np.float32(num_buckets - max_exact)).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return (buckets + np.where(distance < max_exact, distance, large)).astype(np.int32)


def bucket_table(query_length: int, key_length: int, bidirectional: bool,
                 config: T5Config) -> np.ndarray:
  """[query_length, key_length] int32 buckets of key j seen from query i."""
  relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
  return relative_position_bucket(relative, bidirectional, config.relative_attention_num_buckets,
                                  config.relative_attention_max_distance)


def padding_bias(mask: jax.Array) -> jax.Array:
  """[batch, keys] bool (True = real token) -> [batch, 1, 1, keys] additive float32 (0 / min)."""
  return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)[:, None, None, :]


def _dense(config: T5Config, features: int, std: float, name: str) -> nn.Dense:
  return nn.Dense(features, use_bias=False, kernel_init=nn.initializers.normal(std), name=name,
                  dtype=DTYPES[config.dtype], param_dtype=jnp.float32)


class Attention(nn.Module):
  """T5 multi-head attention (self or cross) on precomputed keys and values."""
  config: T5Config

  def setup(self):
    c = self.config
    inner = c.num_heads * c.d_kv
    self.q = _dense(c, inner, (c.d_model * c.d_kv) ** -0.5, "q")
    self.k = _dense(c, inner, c.d_model ** -0.5, "k")
    self.v = _dense(c, inner, c.d_model ** -0.5, "v")
    self.o = _dense(c, c.d_model, inner ** -0.5, "o")
    self.dropout = dropout.Dropout(c.dropout_rate)

  def _heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.config.num_heads, self.config.d_kv)

  def key_value(self, x: jax.Array) -> tuple:
    """x: [batch, keys, d_model] -> (k, v), each [batch, keys, heads, d_kv]."""
    return self._heads(self.k(x)), self._heads(self.v(x))

  def __call__(self, x: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array,
               deterministic: bool) -> jax.Array:
    """x: [batch, queries, d_model]; k, v: [batch, keys, heads, d_kv]; bias: additive, broadcastable
    to [batch, heads, queries, keys] (position bias + masks). Returns [batch, queries, d_model]."""
    q = self._heads(self.q(x))
    # float32 bias: a bfloat16 product's logits get their softmax in float32
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias
    weights = self.dropout(jax.nn.softmax(logits, axis=-1), deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)
    return self.o(out.reshape(*x.shape[:-1], -1))


class FeedForward(nn.Module):
  """wo(Dropout(ReLU(wi(x)))): [..., d_model] -> [..., d_model]."""
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    h = nn.relu(_dense(c, c.d_ff, c.d_model ** -0.5, "wi")(x))
    h = dropout.Dropout(c.dropout_rate)(h, deterministic)
    return _dense(c, c.d_model, c.d_ff ** -0.5, "wo")(h)


def _norm(config: T5Config, name: str) -> nn.RMSNorm:
  return nn.RMSNorm(epsilon=config.layer_norm_epsilon, name=name)


class EncoderBlock(nn.Module):
  config: T5Config

  def setup(self):
    self.self_attention_norm = _norm(self.config, "self_attention_norm")
    self.self_attention = Attention(self.config)
    self.feed_forward_norm = _norm(self.config, "feed_forward_norm")
    self.feed_forward = FeedForward(self.config)
    self.dropout = dropout.Dropout(self.config.dropout_rate)

  def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool) -> jax.Array:
    """x: [batch, L, d_model]; bias: [batch, heads, L, L] -> [batch, L, d_model]."""
    h = self.self_attention_norm(x)
    x = x + self.dropout(self.self_attention(h, *self.self_attention.key_value(h), bias,
                                             deterministic), deterministic)
    h = self.feed_forward(self.feed_forward_norm(x), deterministic)
    return x + self.dropout(h, deterministic)


class DecoderBlock(nn.Module):
  config: T5Config

  def setup(self):
    self.self_attention_norm = _norm(self.config, "self_attention_norm")
    self.self_attention = Attention(self.config)
    self.cross_attention_norm = _norm(self.config, "cross_attention_norm")
    self.cross_attention = Attention(self.config)
    self.feed_forward_norm = _norm(self.config, "feed_forward_norm")
    self.feed_forward = FeedForward(self.config)
    self.dropout = dropout.Dropout(self.config.dropout_rate)

  def cross_key_value(self, encoded: jax.Array) -> tuple:
    """[batch, S, d_model] -> this block's cross-attention (k, v), each [batch, S, heads, d_kv]."""
    return self.cross_attention.key_value(encoded)

  def __call__(self, x: jax.Array, self_bias: jax.Array, cross_kv: tuple, cross_bias: jax.Array,
               num_beams: int, deterministic: bool, cache: tuple | None = None,
               position: jax.Array | None = None) -> tuple:
    """One decoder block.

    Args:
      x: [batch * num_beams, T, d_model] decoder states.
      self_bias: broadcastable to [batch * num_beams, heads, T, T'] (position bias + causal mask),
        T' = T, or the cache length in incremental decoding.
      cross_kv: (k, v) [batch, S, heads, d_kv], computed once per user and shared by its beams.
      cross_bias: [batch, 1, 1, S] encoder padding.
      num_beams: beams per user: the beams' queries are folded into the query axis of the
        cross-attention ([batch, num_beams * T, d_model]) so one matmul per user serves them all.
      cache: optional (k, v) [batch * num_beams, T', heads, d_kv] self-attention cache; this
        call's keys and values (T = 1) are written at `position` and attention runs over it.

    Returns:
      ([batch * num_beams, T, d_model], the self-attention (k, v) used: the updated cache).
    """
    h = self.self_attention_norm(x)
    k, v = self.self_attention.key_value(h)
    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache[0], k, position, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache[1], v, position, axis=1)
    x = x + self.dropout(self.self_attention(h, k, v, self_bias, deterministic), deterministic)
    rows, length, width = x.shape
    h = self.cross_attention_norm(x).reshape(rows // num_beams, num_beams * length, width)
    h = self.cross_attention(h, *cross_kv, cross_bias, deterministic).reshape(x.shape)
    x = x + self.dropout(h, deterministic)
    h = self.feed_forward(self.feed_forward_norm(x), deterministic)
    return x + self.dropout(h, deterministic), (k, v)


class Encoder(nn.Module):
  """A T5 encoder stack on embedded tokens."""
  config: T5Config

  def setup(self):
    c = self.config
    self.relative_attention_bias = nn.Embed(
        c.relative_attention_num_buckets, c.num_heads,
        embedding_init=nn.initializers.normal(c.d_model ** -0.5))
    self.blocks = [EncoderBlock(c, name=f"block_{i}") for i in range(c.num_layers)]
    self.final_norm = _norm(c, "final_norm")
    self.dropout = dropout.Dropout(c.dropout_rate)

  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    """x: [batch, L, d_model] embeddings; mask: [batch, L] bool -> [batch, L, d_model]."""
    length = x.shape[1]
    buckets = bucket_table(length, length, True, self.config)
    bias = self.relative_attention_bias(buckets).transpose(2, 0, 1)[None] + padding_bias(mask)
    x = self.dropout(x, deterministic)
    for block in self.blocks:
      x = block(x, bias, deterministic)
    return self.dropout(self.final_norm(x), deterministic)


class Decoder(nn.Module):
  """A T5 decoder stack; full-sequence (teacher forcing) or one step with a KV cache."""
  config: T5Config

  def setup(self):
    c = self.config
    self.relative_attention_bias = nn.Embed(
        c.relative_attention_num_buckets, c.num_heads,
        embedding_init=nn.initializers.normal(c.d_model ** -0.5))
    self.blocks = [DecoderBlock(c, name=f"block_{i}") for i in range(c.num_decoder_layers)]
    self.final_norm = _norm(c, "final_norm")
    self.dropout = dropout.Dropout(c.dropout_rate)

  def position_bias(self, length: int) -> jax.Array:
    """[heads, length, length] causal position bias plus the causal mask (min above diagonal)."""
    bias = self.relative_attention_bias(bucket_table(length, length, False, self.config))
    causal = np.tril(np.ones((length, length), bool))
    return jnp.where(causal[None], bias.transpose(2, 0, 1), NEG_INF)

  def cross_key_values(self, encoded: jax.Array) -> list:
    """[batch, S, d_model] -> per block (k, v), each [batch, S, heads, d_kv]."""
    return [block.cross_key_value(encoded) for block in self.blocks]

  def __call__(self, y: jax.Array, cross_kv: list, encoder_mask: jax.Array, num_beams: int,
               deterministic: bool) -> jax.Array:
    """y: [batch * num_beams, T, d_model] embedded decoder inputs; cross_kv from
    `cross_key_values`; encoder_mask: [batch, S] bool -> [batch * num_beams, T, d_model]."""
    self_bias = self.position_bias(y.shape[1])[None]
    cross_bias = padding_bias(encoder_mask)
    y = self.dropout(y, deterministic)
    for block, kv in zip(self.blocks, cross_kv):
      y, _ = block(y, self_bias, kv, cross_bias, num_beams, deterministic)
    return self.dropout(self.final_norm(y), deterministic)

  def step(self, y: jax.Array, position: jax.Array, cache: dict, cross_kv: list,
           encoder_mask: jax.Array, num_beams: int) -> tuple:
    """One incremental step (no dropout).

    Args:
      y: [batch * num_beams, 1, d_model] embedded input token at `position`.
      position: [] int32 index of the token in the sequence.
      cache: {"k", "v"}: [layers, batch * num_beams, max_len, heads, d_kv] self-attention keys and
        values of positions < position (later slots are ignored).
      cross_kv, encoder_mask: as in __call__.

    Returns:
      ([batch * num_beams, d_model] output of the stack, cache with this position written).
    """
    max_len = cache["k"].shape[2]
    self_bias = jax.lax.dynamic_slice_in_dim(self.position_bias(max_len), position, 1, axis=1)
    self_bias = self_bias[None]
    cross_bias = padding_bias(encoder_mask)
    keys, values = [], []
    for i, (block, kv) in enumerate(zip(self.blocks, cross_kv)):
      y, (k, v) = block(y, self_bias, kv, cross_bias, num_beams, True,
                        cache=(cache["k"][i], cache["v"][i]), position=position)
      keys.append(k)
      values.append(v)
    return self.final_norm(y)[:, 0], {"k": jnp.stack(keys), "v": jnp.stack(values)}


class T5(nn.Module):
  """T5 v1.0 encoder-decoder with late fusion of N prompts per example.

  Shapes: input_ids [batch, N, L] int32 (pad 0; N <= num_prompt_positions when that is > 0, N = 1
  for plain T5); decoder_input_ids [batch, T] int32 (start token 0, then the target shifted right).
  """
  config: T5Config

  def setup(self):
    c = self.config
    self.shared = nn.Embed(c.vocab_size, c.d_model, embedding_init=nn.initializers.normal(1.0))
    self.encoder = Encoder(c)
    self.decoder = Decoder(c)
    if c.num_prompt_positions and c.prompt_position_embedding:
      self.prompt_position = nn.Embed(c.num_prompt_positions, c.d_model,
                                      embedding_init=nn.initializers.normal(0.02))

  def _prompt_positions(self, num_prompts: int) -> jax.Array | None:
    """[num_prompts, d_model] rows of the prompt-position table (None without one)."""
    positions = self.config.num_prompt_positions
    if positions and num_prompts > positions:
      raise ValueError(f"{num_prompts} prompts per example but num_prompt_positions={positions}")
    if not positions and num_prompts != 1:
      raise ValueError(f"{num_prompts} prompts per example need num_prompt_positions >= "
                       f"{num_prompts} (0 = plain T5, one prompt)")
    if positions and self.config.prompt_position_embedding:
      return self.prompt_position(jnp.arange(num_prompts))
    return None

  def encode(self, input_ids: jax.Array, deterministic: bool = True) -> tuple:
    """Late fusion: [batch, N, L] prompts -> ([batch, N * L, d_model] encoder output, [batch, N * L]
    bool mask of real tokens)."""
    batch, num_prompts, length = input_ids.shape
    position = self._prompt_positions(num_prompts)
    tokens = input_ids.reshape(batch * num_prompts, length)
    mask = tokens != self.config.pad_token_id
    h = self.encoder(self.shared(tokens), mask, deterministic)
    h = h.reshape(batch, num_prompts, length, -1)
    if position is not None:
      h = h + position[None, :, None, :]
    return h.reshape(batch, num_prompts * length, -1), mask.reshape(batch, num_prompts * length)

  def late_fusion(self, inputs: jax.Array | Mapping, deterministic: bool = True) -> tuple:
    """The decoder's memory of a batch of prompts.

    Args:
      inputs: [batch, N, L] int32 prompts, or a distinct-prompt dict (module docstring).

    Returns:
      (per decoder block the cross-attention (k, v), each [batch, N * L, heads, d_kv];
       [batch, N * L] bool mask of real tokens).
    """
    if isinstance(inputs, Mapping):
      return self._distinct_late_fusion(*(inputs[k] for k in DISTINCT_KEYS),
                                        deterministic=deterministic)
    encoded, mask = self.encode(inputs, deterministic)
    return self.cross_key_values(encoded), mask

  def _distinct_late_fusion(self, user_prompts: jax.Array, item_prompts: jax.Array,
                            prompt_index: jax.Array, deterministic: bool) -> tuple:
    """`late_fusion` of user_prompts [batch, L], item_prompts [G, U, L], prompt_index
    [batch, N - 1] (module docstring): U + batch prompts encoded, not batch * N."""
    batch, length = user_prompts.shape
    groups, unique = item_prompts.shape[:2]
    fine = prompt_index.shape[1]
    if batch % groups:
      raise ValueError(f"{batch} rows do not split into {groups} groups of item prompts")
    position = self._prompt_positions(1 + fine)
    pad = self.config.pad_token_id
    user_mask = user_prompts != pad
    h = self.encoder(self.shared(user_prompts), user_mask, deterministic)
    user_kv = self.cross_key_values(h if position is None else h + position[0])
    if not fine:
      return user_kv, user_mask
    tokens = item_prompts.reshape(groups * unique, length)
    item_kv = self.cross_key_values(self.encoder(self.shared(tokens), tokens != pad,
                                                 deterministic))
    slots = jnp.maximum(prompt_index, 0).reshape(groups, -1)

    def gather(x):  # [G * U, L, ...] rows -> [batch, N - 1, L, ...] slots, within each group
      x = x.reshape(groups, unique, *x.shape[1:])
      return jax.vmap(lambda rows, i: rows[i])(x, slots).reshape(batch, fine, *x.shape[2:])

    def fuse(user, item, pos):  # [batch, L,..], [G * U, L,..], [1, N - 1,..] -> [batch, N * L,..]
      item = gather(item)
      if pos is not None:
        item = item + pos[:, :, None]
      out = jnp.concatenate([user[:, None], item], axis=1)
      return out.reshape(batch, (1 + fine) * length, *out.shape[3:])

    if position is None:
      position_kv = [(None, None)] * len(user_kv)
    else:  # k(p_n), v(p_n) of every item slot, added after the gather
      position_kv = self.cross_key_values(position[None, 1:])
    cross_kv = [(fuse(ku, ki, kp), fuse(vu, vi, vp)) for (ku, vu), (ki, vi), (kp, vp)
                in zip(user_kv, item_kv, position_kv)]
    item_mask = gather(tokens != pad) & (prompt_index >= 0)[..., None]
    mask = jnp.concatenate([user_mask[:, None], item_mask], axis=1).reshape(batch, -1)
    return cross_kv, mask

  def cross_key_values(self, encoded: jax.Array) -> list:
    """[batch, S, d_model] -> per decoder block (k, v) [batch, S, heads, d_kv]; once per user."""
    return self.decoder.cross_key_values(encoded)

  def logits(self, h: jax.Array) -> jax.Array:
    """Tied output layer with T5's rescaling: [..., d_model] -> [..., vocab] float32."""
    h = h * self.config.d_model ** -0.5
    if self.config.dtype == "float32":
      return self.shared.attend(h)
    dtype = DTYPES[self.config.dtype]
    return jnp.einsum("...d,vd->...v", h.astype(dtype), self.shared.embedding.astype(dtype),
                      preferred_element_type=jnp.float32)

  def decode(self, decoder_input_ids: jax.Array, encoded: jax.Array, encoder_mask: jax.Array,
             deterministic: bool = True, num_beams: int = 1) -> jax.Array:
    """decoder_input_ids: [batch * num_beams, T]; encoded, encoder_mask: [batch, S(, d_model)] ->
    logits [batch * num_beams, T, vocab] (causal: position t sees inputs <= t)."""
    y = self.shared(decoder_input_ids)
    h = self.decoder(y, self.cross_key_values(encoded), encoder_mask, num_beams, deterministic)
    return self.logits(h)

  def decode_step(self, tokens: jax.Array, position: jax.Array, cache: dict, cross_kv: list,
                  encoder_mask: jax.Array, num_beams: int) -> tuple:
    """tokens: [batch * num_beams] int32 inputs at `position` -> (logits [batch * num_beams, vocab],
    updated cache); see `Decoder.step` and `init_cache`."""
    h, cache = self.decoder.step(self.shared(tokens)[:, None], position, cache, cross_kv,
                                 encoder_mask, num_beams)
    return self.logits(h), cache

  def __call__(self, inputs: jax.Array | Mapping, decoder_input_ids: jax.Array,
               deterministic: bool = True) -> jax.Array:
    """Teacher-forced logits [batch, T, vocab] of `inputs` ([batch, N, L] prompts or a
    distinct-prompt dict, see `late_fusion`)."""
    cross_kv, mask = self.late_fusion(inputs, deterministic)
    h = self.decoder(self.shared(decoder_input_ids), cross_kv, mask, 1, deterministic)
    return self.logits(h)


def init_cache(config: T5Config, rows: int, max_len: int) -> dict:
  """Zero self-attention cache {"k", "v"}: [decoder layers, rows, max_len, heads, d_kv] in the
  config's dtype (the keys' and values' own)."""
  shape = (config.num_decoder_layers, rows, max_len, config.num_heads, config.d_kv)
  dtype = DTYPES[config.dtype]
  return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def init_params(model: T5, seed: int) -> Any:
  """Parameters of `model` (Hugging Face's T5 init; prompt positions std 0.02)."""
  return _init(model, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnums=0)  # compiled once per config (modules hash by it)
def _init(model: T5, key: jax.Array) -> Any:
  input_ids = jnp.ones((1, 1, 2), jnp.int32)
  return model.init(key, input_ids, jnp.zeros((1, 2), jnp.int32))["params"]
