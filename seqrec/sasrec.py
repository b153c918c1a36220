"""SASRec (Kang & McAuley, ICDM'18) as RecBole implements it, in Flax Linen.

Facts taken from RecBole's `sequential_recommender/sasrec.py` and `model/layers.py`
(TransformerEncoder, MultiHeadAttention, FeedForward), all reproduced here:
- Item ids are shifted by one: id 0 is padding, item i of a `recsys_core.dataset.Dataset` is id i + 1. The
  item table has num_items + 1 rows; RecBole's `padding_idx=0` row is then re-initialised like the
  others by its `_init_weights`, so it is an ordinary trainable row (it gets gradient only through
  the output scores).
- Sequences are RIGHT-padded (RecBole stores item_list[:length] and pads the tail); positions are
  0..max_len-1 from the first real item (learned position embedding, max_len rows).
- input = Dropout(LayerNorm(item_emb + pos_emb)), LayerNorm eps 1e-12, hidden dropout.
- Post-norm blocks: h = LayerNorm(h + Dropout(Dense(Attention(h)))), attention probabilities get
  attention dropout; then h = LayerNorm(h + Dropout(Dense_2(GELU(Dense_1(h))))), GELU the exact erf
  form, Dense_1: hidden -> inner.
- Attention mask: causal AND key is not padding, added to the logits as 0 / -10000 (RecBole).
- Init: every Dense kernel and embedding ~ Normal(0, 0.02), biases 0, LayerNorm scale 1 bias 0.
- Output: the last block's hidden state at the last real position (length - 1); scores = that
  state @ item_table^T with the SAME table as the input ("CE" loss: softmax cross-entropy over all
  num_items + 1 rows, padding row included, as RecBole computes it).
Checked against RecBole 1.2.1's own modules with shared weights (benchmarks/recbole_parity.py):
scores agree to 1.4e-6; the Beauty configuration has RecBole's 877,824 parameters.
Not in RecBole: training rows may hold several sequences (`seqrec.data.Batches` packing); each one
then takes its own positions and attends only to itself (`segments`), so its outputs are unchanged.
Dropout masks come from `recsys_core.dropout` (hashed, cheaper than threefry on a CPU).

Evaluation (full ranking, `seqrec/run.py`): RecBole's sequential full-sort evaluation masks ONLY the
padding id 0 (`scores[:, 0] = -inf`; its FullSortEvalDataLoader passes no history for sequential
models), so items the user has already seen stay rankable. We score the num_items real items only
(padding is never ranked) and, by default, mask nothing else; `config.mask_history=True` instead
also excludes the user's earlier items (valid: the training part; test: training part + the
validation item), the convention of the project's other models.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recsys_core import dropout
from recsys_core.errors import ConfigError

PADDING = 0


class MultiHeadAttention(nn.Module):
  """RecBole MultiHeadAttention: self-attention + dense + dropout + residual + LayerNorm."""
  num_heads: int
  dropout: float
  attention_dropout: float
  layer_norm_eps: float
  init_std: float

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool) -> jax.Array:
    """x: [batch, seq_len, hidden]; bias: [batch, 1, seq_len, seq_len] additive (0 or -10000)."""
    batch, length, hidden = x.shape
    head = hidden // self.num_heads
    dense = lambda name: nn.Dense(hidden, kernel_init=nn.initializers.normal(self.init_std),
                                  name=name)
    split = lambda y: y.reshape(batch, length, self.num_heads, head).transpose(0, 2, 1, 3)
    q, k, v = (split(dense(name)(x)) for name in ("query", "key", "value"))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head).astype(np.float32) + bias
    probs = dropout.Dropout(self.attention_dropout)(jax.nn.softmax(logits, axis=-1), deterministic)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    out = dropout.Dropout(self.dropout)(dense("dense")(context), deterministic)
    return nn.LayerNorm(epsilon=self.layer_norm_eps, name="layer_norm")(out + x)


class FeedForward(nn.Module):
  """RecBole FeedForward: dense_1 -> GELU(erf) -> dense_2 -> dropout -> residual -> LayerNorm."""
  inner: int
  dropout: float
  layer_norm_eps: float
  init_std: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """x: [batch, seq_len, hidden] -> same shape."""
    init = nn.initializers.normal(self.init_std)
    h = nn.gelu(nn.Dense(self.inner, kernel_init=init, name="dense_1")(x), approximate=False)
    h = dropout.Dropout(self.dropout)(nn.Dense(x.shape[-1], kernel_init=init, name="dense_2")(h),
                                 deterministic)
    return nn.LayerNorm(epsilon=self.layer_norm_eps, name="layer_norm")(h + x)


class SASRec(nn.Module):
  """RecBole's SASRec.

  Attributes:
    num_items: real items; the item table has num_items + 1 rows (row 0 = padding).
    max_len: longest input sequence (rows of the position table).
    hidden, inner, num_layers, num_heads: sizes (hidden % num_heads == 0).
    dropout: hidden dropout; attention_dropout: dropout on attention probabilities.
    score_temperature: 0 scores by the dot product (RecBole); t > 0 by cosine / t, the state and
      every table row L2-normalised first (DWSRec / WhitenRec's scoring, t = 0.07 there).
  """
  num_items: int
  max_len: int = 50
  hidden: int = 64
  inner: int = 256
  num_layers: int = 2
  num_heads: int = 2
  dropout: float = 0.5
  attention_dropout: float = 0.5
  layer_norm_eps: float = 1e-12
  init_std: float = 0.02
  score_temperature: float = 0.0
  # Optional module computing the whole [num_items + 1, hidden] item table from its own parameters
  # (an adapter over frozen LLM embeddings, seqrec/initialisers.py), called as
  # item_table(deterministic). None: RecBole's trainable nn.Embed table.
  item_table: Optional[nn.Module] = None

  def setup(self):
    if self.hidden % self.num_heads:
      raise ConfigError(f"hidden={self.hidden} is not a multiple of num_heads={self.num_heads}")
    init = nn.initializers.normal(self.init_std)
    if self.item_table is None:
      self.item_embedding = nn.Embed(self.num_items + 1, self.hidden, embedding_init=init)
    self.position_embedding = nn.Embed(self.max_len, self.hidden, embedding_init=init)
    self.layer_norm = nn.LayerNorm(epsilon=self.layer_norm_eps)
    self.embed_dropout = dropout.Dropout(self.dropout)
    self.attention = [MultiHeadAttention(self.num_heads, self.dropout, self.attention_dropout,
                                         self.layer_norm_eps, self.init_std)
                      for _ in range(self.num_layers)]
    self.feed_forward = [FeedForward(self.inner, self.dropout, self.layer_norm_eps, self.init_std)
                         for _ in range(self.num_layers)]

  def encode(self, item_seq: jax.Array, deterministic: bool = True,
             table: Optional[jax.Array] = None, segments: Optional[jax.Array] = None,
             positions: Optional[jax.Array] = None) -> jax.Array:
    """Hidden states of every position.

    Args:
      item_seq: [batch, seq_len] int32 shifted item ids, right-padded with 0, seq_len <= max_len;
        or several windows packed per row (`seqrec.data.Batches.packed`) with `segments` and
        `positions`.
      deterministic: False applies dropout (needs the 'dropout' rng).
      table: with an `item_table` module, its [num_items + 1, hidden] output when already computed.
      segments: packed rows only, [batch, seq_len] int32 window number of each position (0: free);
        a position attends only to its own window.
      positions: packed rows only, [batch, seq_len] int32 position inside the window.

    Returns:
      [batch, seq_len, hidden] float32 output of the last block.
    """
    if positions is None:
      positions = jnp.arange(item_seq.shape[1])[None]
    if self.item_table is None:
      items = self.item_embedding(item_seq)
    else:
      items = jnp.take(self.item_table(deterministic) if table is None else table, item_seq, axis=0)
    h = self.embed_dropout(self.layer_norm(items + self.position_embedding(positions)),
                           deterministic)
    bias = attention_bias(item_seq, segments)
    for attention, feed_forward in zip(self.attention, self.feed_forward):
      h = feed_forward(attention(h, bias, deterministic), deterministic)
    return h

  def __call__(self, item_seq: jax.Array, deterministic: bool = True,
               table: Optional[jax.Array] = None, segments: Optional[jax.Array] = None,
               positions: Optional[jax.Array] = None, last: Optional[jax.Array] = None
               ) -> jax.Array:
    """Hidden state at each sequence's last real position: [batch, hidden] (right padding), or
    [windows, hidden] at the flat positions `last` [windows] (row * seq_len + column) of packed
    rows."""
    h = self.encode(item_seq, deterministic, table, segments, positions)
    if last is not None:
      return jnp.take(h.reshape(-1, h.shape[-1]), last, axis=0)
    last = jnp.maximum(jnp.sum(item_seq != PADDING, axis=1) - 1, 0)
    return jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]

  def scores(self, item_seq: jax.Array, deterministic: bool = True, **packing) -> jax.Array:
    """[batch, num_items + 1] logits over the item table (column 0 = padding); `packing`:
    segments, positions and last of packed rows (`__call__`)."""
    if self.item_table is None:
      table = self.item_embedding.embedding
      state = self(item_seq, deterministic, **packing)
    else:
      table = self.item_table(deterministic)  # once: inputs and outputs share it (and its dropout)
      state = self(item_seq, deterministic, table, **packing)
    if self.score_temperature > 0:
      return unit_rows(state) @ unit_rows(table).T / self.score_temperature
    return state @ table.T

  def table(self, deterministic: bool = True) -> jax.Array:
    """[num_items + 1, hidden] the item table as the model uses it (row 0 = padding)."""
    if self.item_table is None:
      return self.item_embedding.embedding
    return self.item_table(deterministic)


def unit_rows(x: jax.Array) -> jax.Array:
  """[n, d] rows scaled to unit L2 norm (torch's F.normalize: norms clamped at 1e-12)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def attention_bias(item_seq: jax.Array, segments: Optional[jax.Array] = None) -> jax.Array:
  """[batch, 1, seq_len, seq_len] float32: 0 where query i may attend key j (j <= i and key j is
  not padding, RecBole's get_attention_mask; with `segments`, also j in i's window), -10000
  elsewhere."""
  length = item_seq.shape[1]
  allowed = (item_seq != PADDING)[:, None, None, :] & jnp.tril(jnp.ones((length, length), bool))
  if segments is not None:
    allowed &= segments[:, None, :, None] == segments[:, None, None, :]
  return jnp.where(allowed, 0.0, -10000.0).astype(jnp.float32)


def ce_loss(model: SASRec, params: Any, batch: dict, rng: jax.Array) -> tuple:
  """Softmax cross-entropy of the next item over all num_items + 1 rows (RecBole's "CE").

  Args:
    batch: {"inputs": [b, width] int32 right-padded shifted ids, "targets": [b] int32 shifted ids,
      "weights": [b] float32, 1 for real examples and 0 for the rows padding the last batch}; or
      packed (`seqrec.data.Batches.packed`): "inputs", "segments", "positions" [rows, width] and
      "last", "targets", "weights" [b].

  Returns:
    (weighted mean loss over all examples, {"examples": number of real examples}).
  """
  packing = {name: batch[name] for name in ("segments", "positions", "last") if name in batch}
  logits = model.apply({"params": params}, batch["inputs"], deterministic=False,
                       rngs={"dropout": rng}, method=SASRec.scores, **packing)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][:, None], axis=1)[:, 0]
  count = jnp.sum(batch["weights"])
  return jnp.sum(nll * batch["weights"]) / jnp.maximum(count, 1.0), {"examples": count}


def init_params(model: SASRec, seed: int, item_table: Optional[np.ndarray] = None) -> Any:
  """Parameters of `model` (RecBole init), optionally with a given item table (the ACE hook).

  Args:
    seed: PRNG seed of the initialisation.
    item_table: optional [num_items, hidden] float matrix; it replaces rows 1.. of the item table
      (row i + 1 = item i); the padding row keeps its random initialisation.
  """
  dummy = jnp.zeros((1, model.max_len), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), dummy)["params"]  # jit: not op by op
  if item_table is not None:
    table = params["item_embedding"]["embedding"]
    item_table = np.asarray(item_table, np.float32)
    if item_table.shape != (model.num_items, model.hidden):
      raise ValueError(f"item_table has shape {item_table.shape}, expected "
                       f"({model.num_items}, {model.hidden}) = (num_items, hidden)")
    params = jax.tree.map(lambda x: x, params)  # a copy we may edit
    params["item_embedding"]["embedding"] = table.at[1:].set(item_table)
  return params


def is_item_table(path: tuple) -> bool:
  """Key-path predicate of the item table (for `recsys_core.train.masked_optimizer` when frozen)."""
  return tuple(path[-2:]) == ("item_embedding", "embedding")
