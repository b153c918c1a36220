"""BERT4Rec (Sun et al., CIKM'19) as RecBole implements it, in Flax Linen.

Facts taken from RecBole's `sequential_recommender/bert4rec.py` (1.2, the version the ACE authors
copied into DCheol/ACE `recbole/model/sequential_recommender/ace_bert4rec.py`) and its
`data/transform.py` (MaskItemSequence), all reproduced here:
- Ids shifted by one as in `seqrec/sasrec.py`; the item table has num_items + 2 rows: row 0 =
  padding, rows 1..num_items = items, row num_items + 1 = the [MASK] token (RecBole: n_items + 1
  rows with its n_items counting the padding id; mask_token = n_items).
- Encoder: SASRec's (`seqrec.sasrec.MultiHeadAttention`, `FeedForward`: post-norm blocks, GELU(erf),
  LayerNorm eps 1e-12) on Dropout(LayerNorm(item_emb + pos_emb)) with a BIDIRECTIONAL attention
  mask: every key that is not padding, 0 / -10000 added to the logits.
- Output head: LayerNorm(GELU(Dense(h))) ("output_ffn", "output_gelu", "output_ln"); logits =
  head @ table[:num_items + 1]^T + output_bias [num_items + 1] (the mask row is not scored; the
  padding column is, as in RecBole).
- Init: every Dense kernel and embedding ~ N(0, 0.02), biases 0, output_bias 0, LayerNorm 1 / 0.
- Training ("CE", `cloze_loss`): cross-entropy over the num_items + 1 columns at the masked
  positions only (examples from `seqrec/cloze.py`).
- Evaluation (`scores`, RecBole's reconstruct_test_data + full_sort_predict): a [MASK] is written
  after the last item, then the FIRST COLUMN IS DROPPED (RecBole keeps the window at max_len
  positions this way for every sequence, short ones included, so the oldest item of the history
  is never seen); the output at the mask (position length - 1) scores the items.
Packed training rows (several windows per row, `seqrec/cloze.py`) attend only within their window.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from recsys_core import dropout
from recsys_core.errors import ConfigError
from seqrec import sasrec

PADDING = 0


class BERT4Rec(nn.Module):
  """RecBole's BERT4Rec.

  Attributes:
    num_items: real items; the item table has num_items + 2 rows (0 = padding, num_items + 1 =
      mask).
    max_len: rows of the position table (RecBole MAX_ITEM_LIST_LENGTH).
    hidden, inner, num_layers, num_heads: sizes (hidden % num_heads == 0).
    dropout: hidden dropout; attention_dropout: dropout on attention probabilities.
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
  # Optional module computing the whole [num_items + 2, hidden] table (mask row last,
  # seqrec/initialisers.py), called as item_table(deterministic); None: a trainable nn.Embed.
  item_table: Optional[nn.Module] = None

  @property
  def mask_id(self) -> int:
    return self.num_items + 1

  def setup(self):
    if self.hidden % self.num_heads:
      raise ConfigError(f"hidden={self.hidden} is not a multiple of num_heads={self.num_heads}")
    init = nn.initializers.normal(self.init_std)
    if self.item_table is None:
      self.item_embedding = nn.Embed(self.num_items + 2, self.hidden, embedding_init=init)
    self.position_embedding = nn.Embed(self.max_len, self.hidden, embedding_init=init)
    self.layer_norm = nn.LayerNorm(epsilon=self.layer_norm_eps)
    self.embed_dropout = dropout.Dropout(self.dropout)
    self.attention = [sasrec.MultiHeadAttention(self.num_heads, self.dropout,
                                                self.attention_dropout, self.layer_norm_eps,
                                                self.init_std) for _ in range(self.num_layers)]
    self.feed_forward = [sasrec.FeedForward(self.inner, self.dropout, self.layer_norm_eps,
                                            self.init_std) for _ in range(self.num_layers)]
    self.output_ffn = nn.Dense(self.hidden, kernel_init=init)
    self.output_ln = nn.LayerNorm(epsilon=self.layer_norm_eps)
    self.output_bias = self.param("output_bias", nn.initializers.zeros, (self.num_items + 1,),
                                  jnp.float32)

  def encode(self, item_seq: jax.Array, deterministic: bool = True,
             table: Optional[jax.Array] = None, segments: Optional[jax.Array] = None,
             positions: Optional[jax.Array] = None) -> jax.Array:
    """[batch, seq_len, hidden] output head at every position.

    Args:
      item_seq: [batch, seq_len] int32 shifted ids (mask_id allowed), right-padded with 0,
        seq_len <= max_len; or packed rows with `segments` and `positions` (as SASRec's).
      table: the [num_items + 2, hidden] table when already computed.
    """
    if positions is None:
      positions = jnp.arange(item_seq.shape[1])[None]
    table = self.table(deterministic) if table is None else table
    h = jnp.take(table, item_seq, axis=0) + self.position_embedding(positions)
    h = self.embed_dropout(self.layer_norm(h), deterministic)
    bias = bidirectional_bias(item_seq, segments)
    for attention, feed_forward in zip(self.attention, self.feed_forward):
      h = feed_forward(attention(h, bias, deterministic), deterministic)
    return self.output_ln(nn.gelu(self.output_ffn(h), approximate=False))

  def logits(self, states: jax.Array, table: jax.Array) -> jax.Array:
    """[..., num_items + 1] scores of padding + items (the mask row is not scored)."""
    return states @ table[:self.num_items + 1].T + self.output_bias

  def __call__(self, item_seq: jax.Array, deterministic: bool = True) -> jax.Array:
    """[batch, num_items + 1] evaluation scores (`scores`); `init` traces this."""
    return self.scores(item_seq, deterministic)

  def scores(self, item_seq: jax.Array, deterministic: bool = True) -> jax.Array:
    """[batch, num_items + 1] scores of the next item after each right-padded history
    [batch, seq_len] (RecBole's full_sort_predict; column 0 = padding)."""
    table = self.table(deterministic)
    masked, at = append_mask(item_seq, self.mask_id)
    h = self.encode(masked, deterministic, table)
    return self.logits(jnp.take_along_axis(h, at[:, None, None], axis=1)[:, 0], table)

  def cloze_logits(self, item_seq: jax.Array, index: jax.Array, deterministic: bool = True,
                   segments: Optional[jax.Array] = None, positions: Optional[jax.Array] = None
                   ) -> jax.Array:
    """[batch, m, num_items + 1] scores at the masked positions.

    Args:
      item_seq: [rows, seq_len] masked inputs (`seqrec.cloze`), packed or not.
      index: [batch, m] int32 flat positions row * seq_len + column of the masked items.
    """
    table = self.table(deterministic)
    h = self.encode(item_seq, deterministic, table, segments, positions)
    return self.logits(jnp.take(h.reshape(-1, h.shape[-1]), index, axis=0), table)

  def table(self, deterministic: bool = True) -> jax.Array:
    """[num_items + 2, hidden] the item table (row 0 = padding, row num_items + 1 = mask)."""
    if self.item_table is None:
      return self.item_embedding.embedding
    return self.item_table(deterministic)


def bidirectional_bias(item_seq: jax.Array, segments: Optional[jax.Array] = None) -> jax.Array:
  """[batch, 1, seq_len, seq_len] float32: 0 where key j is not padding (and, with `segments`,
  in the query's window), -10000 elsewhere (RecBole's get_attention_mask(bidirectional=True))."""
  length = item_seq.shape[1]
  allowed = jnp.broadcast_to((item_seq != PADDING)[:, None, None, :],
                             (item_seq.shape[0], 1, length, length))
  if segments is not None:
    allowed &= segments[:, None, :, None] == segments[:, None, None, :]
  return jnp.where(allowed, 0.0, -10000.0).astype(jnp.float32)


def append_mask(item_seq: jax.Array, mask_id: int) -> tuple:
  """RecBole's reconstruct_test_data: the mask written after the last item, the first column
  dropped. Returns ([batch, seq_len] inputs, [batch] position of the mask = length - 1)."""
  lengths = jnp.sum(item_seq != PADDING, axis=1)
  extended = jnp.concatenate([item_seq, jnp.zeros_like(item_seq[:, :1])], axis=1)
  extended = extended.at[jnp.arange(item_seq.shape[0]), lengths].set(mask_id)
  return extended[:, 1:], jnp.maximum(lengths - 1, 0)


def cloze_loss(model: BERT4Rec, params: Any, batch: dict, rng: jax.Array) -> tuple:
  """Cross-entropy over the num_items + 1 columns at the masked positions (RecBole's "CE").

  Args:
    batch: `seqrec.cloze.ClozeBatches` output: "inputs" [rows, seq_len] (and "segments",
      "positions" when packed), "index", "targets", "weights" [batch, m].

  Returns:
    (sum of weighted NLL / sum of weights, {"targets": number of masked items in the loss}).
  """
  packing = {name: batch[name] for name in ("segments", "positions") if name in batch}
  logits = model.apply({"params": params}, batch["inputs"], batch["index"], deterministic=False,
                       rngs={"dropout": rng}, method=BERT4Rec.cloze_logits, **packing)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
  count = jnp.sum(batch["weights"])
  return jnp.sum(nll * batch["weights"]) / jnp.maximum(count, 1.0), {"targets": count}
