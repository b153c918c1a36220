"""GRU4Rec (Hidasi et al., ICLR'16; Tan et al., DLRS'16) as RecBole implements it, in Flax Linen.

Facts taken from RecBole's `sequential_recommender/gru4rec.py` (and the ACE authors' copy of it,
DCheol/ACE `recbole/model/sequential_recommender/ace_gru4rec.py`), all reproduced here:
- Item ids are shifted by one as in `seqrec/sasrec.py`: the item table has num_items + 1 rows
  (row 0 = padding, RecBole's `padding_idx=0`), width `hidden` (RecBole `embedding_size`).
- forward: Dropout(item_emb) -> nn.GRU(embedding_size -> hidden_size, num_layers, bias=False,
  batch_first) -> Dense(hidden_size -> embedding_size) -> the output at the last real position
  (length - 1). torch's GRU cell, gates in torch's order (r, z, n):
    r = sigmoid(x W_ir + h W_hr), z = sigmoid(x W_iz + h W_hz),
    n = tanh(x W_in + r * (h W_hn)), h' = (1 - z) * n + z * h, h_0 = 0.
  No dropout between GRU layers (torch's default 0).
- "CE" loss: softmax cross-entropy of the next item over all num_items + 1 rows of the SAME
  table (padding row included, as RecBole computes it); full_sort_predict: state @ table^T.
- Init (`_init_weights`): the item table ~ xavier_normal; the FIRST GRU layer's weight_ih_l0 and
  weight_hh_l0 ~ xavier_uniform (on torch's [3H, in] matrices, so fan_out = 3H); deeper GRU
  layers keep torch's default U(+-1/sqrt(H)); the output Dense keeps torch.nn.Linear's default
  (weight and bias ~ U(+-1/sqrt(fan_in))).
Parameters: "item_embedding"/"embedding" [num_items + 1, hidden] (the same path as SASRec's, so the
optimizer masks, initialisers and checkpoints treat it alike), "gru_<i>"/{"input_kernel"
[in, 3H], "recurrent_kernel" [H, 3H]} (torch's weight_ih_l<i>^T, weight_hh_l<i>^T), "dense".
Right padding never reaches a real output (the GRU is causal). Packed rows
(`seqrec.data.Batches.packed`) restart the state at every window's first position, so each window
gives the output it has alone.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recsys_core import dropout

PADDING = 0

# torch.nn.init.xavier_normal_ / xavier_uniform_ (untruncated), on [fan_in, fan_out] kernels.
xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
xavier_uniform = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
# torch.nn.Linear's default weight init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_uniform(bound: float):
  """U(-bound, bound): torch's default for nn.GRU weights (bound 1/sqrt(H)) and Linear biases."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class GRULayer(nn.Module):
  """One layer of torch.nn.GRU(bias=False) over a [batch, seq_len, in] sequence.

  Attributes:
    features: H, the state size.
    xavier: RecBole's init of layer 0 (xavier_uniform); False: torch's default U(+-1/sqrt(H)).
  """
  features: int
  xavier: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, reset: Optional[jax.Array] = None) -> jax.Array:
    """x: [batch, seq_len, in]; reset: optional [batch, seq_len] bool, state zeroed before that
    step (a packed window's first position). Returns [batch, seq_len, H] states."""
    h_size = self.features
    init = xavier_uniform if self.xavier else torch_uniform(1.0 / np.sqrt(h_size))
    # float32 parameters as flax's own layers keep them, also where jax_enable_x64 is on.
    w_i = self.param("input_kernel", init, (x.shape[-1], 3 * h_size), jnp.float32)
    w_h = self.param("recurrent_kernel", init, (h_size, 3 * h_size), jnp.float32)
    x_gates = jnp.swapaxes(x @ w_i, 0, 1)                    # [seq_len, batch, 3H], all at once
    if reset is None:
      reset = jnp.zeros(x.shape[:2], bool)

    def step(h, inputs):
      xg, restart = inputs
      h = jnp.where(restart[:, None], 0.0, h)
      hg = h @ w_h
      r = jax.nn.sigmoid(xg[:, :h_size] + hg[:, :h_size])
      z = jax.nn.sigmoid(xg[:, h_size:2 * h_size] + hg[:, h_size:2 * h_size])
      n = jnp.tanh(xg[:, 2 * h_size:] + r * hg[:, 2 * h_size:])
      h = (1.0 - z) * n + z * h
      return h, h

    h0 = jnp.zeros((x.shape[0], h_size), x_gates.dtype)
    _, states = jax.lax.scan(step, h0, (x_gates, jnp.swapaxes(reset, 0, 1)))
    return jnp.swapaxes(states, 0, 1)


class GRU4Rec(nn.Module):
  """RecBole's GRU4Rec.

  Attributes:
    num_items: real items; the item table has num_items + 1 rows (row 0 = padding).
    max_len: longest input sequence (only the dummy input of `init_params`).
    hidden: item embedding size (RecBole embedding_size), the width of the item table.
    gru_hidden: GRU state size (RecBole hidden_size).
    num_layers: GRU layers.
    dropout: dropout on the item embeddings (RecBole dropout_prob).
  """
  num_items: int
  max_len: int = 50
  hidden: int = 64
  gru_hidden: int = 128
  num_layers: int = 1
  dropout: float = 0.3
  # Optional module computing the [num_items + 1, hidden] item table (seqrec/initialisers.py),
  # called as item_table(deterministic); None: RecBole's trainable nn.Embedding.
  item_table: Optional[nn.Module] = None

  def setup(self):
    if self.item_table is None:
      self.item_embedding = nn.Embed(self.num_items + 1, self.hidden, embedding_init=xavier_normal)
    self.emb_dropout = dropout.Dropout(self.dropout)
    self.gru = [GRULayer(self.gru_hidden, xavier=(i == 0), name=f"gru_{i}")
                for i in range(self.num_layers)]
    self.dense = nn.Dense(self.hidden, kernel_init=torch_linear_kernel,
                          bias_init=torch_uniform(1.0 / np.sqrt(self.gru_hidden)))

  def states(self, item_seq: jax.Array, deterministic: bool = True,
             table: Optional[jax.Array] = None, positions: Optional[jax.Array] = None
             ) -> jax.Array:
    """[batch, seq_len, gru_hidden] last GRU layer's states.

    Args:
      item_seq: [batch, seq_len] int32 shifted ids, right-padded with 0 (or packed rows).
      table: with an `item_table` module, its output when already computed.
      positions: packed rows only, [batch, seq_len] int32 position inside the window (the state
        restarts at 0).
    """
    if self.item_table is None:
      x = self.item_embedding(item_seq)
    else:
      x = jnp.take(self.item_table(deterministic) if table is None else table, item_seq, axis=0)
    x = self.emb_dropout(x, deterministic)
    reset = None if positions is None else positions == 0
    for layer in self.gru:
      x = layer(x, reset)
    return x

  def encode(self, item_seq: jax.Array, deterministic: bool = True,
             table: Optional[jax.Array] = None, positions: Optional[jax.Array] = None
             ) -> jax.Array:
    """[batch, seq_len, hidden] Dense(GRU states) at every position (RecBole's gru_output)."""
    return self.dense(self.states(item_seq, deterministic, table, positions))

  def __call__(self, item_seq: jax.Array, deterministic: bool = True,
               table: Optional[jax.Array] = None, segments: Optional[jax.Array] = None,
               positions: Optional[jax.Array] = None, last: Optional[jax.Array] = None
               ) -> jax.Array:
    """[batch, hidden] output at each sequence's last real position, or [windows, hidden] at the
    flat positions `last` (row * seq_len + column) of packed rows. `segments` is accepted for
    SASRec's packed-batch interface; the GRU needs only `positions`."""
    del segments
    h = self.states(item_seq, deterministic, table, positions)
    if last is None:
      last = jnp.maximum(jnp.sum(item_seq != PADDING, axis=1) - 1, 0)
      h = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
    else:
      h = jnp.take(h.reshape(-1, h.shape[-1]), last, axis=0)
    return self.dense(h)  # position-wise: gathering first gives RecBole's values, fewer FLOPs

  def scores(self, item_seq: jax.Array, deterministic: bool = True, **packing) -> jax.Array:
    """[batch, num_items + 1] logits over the item table (column 0 = padding)."""
    table = self.table(deterministic)
    return self(item_seq, deterministic, None if self.item_table is None else table,
                **packing) @ table.T

  def table(self, deterministic: bool = True) -> jax.Array:
    """[num_items + 1, hidden] the item table as the model uses it (row 0 = padding)."""
    if self.item_table is None:
      return self.item_embedding.embedding
    return self.item_table(deterministic)


def ce_loss(model: GRU4Rec, params: Any, batch: dict, rng: jax.Array) -> tuple:
  """Softmax cross-entropy of the next item over all num_items + 1 rows (RecBole's "CE"); the
  batch as `seqrec.sasrec.ce_loss` takes it (one window per row, or packed)."""
  packing = {name: batch[name] for name in ("positions", "last") if name in batch}
  logits = model.apply({"params": params}, batch["inputs"], deterministic=False,
                       rngs={"dropout": rng}, method=GRU4Rec.scores, **packing)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, batch["targets"][:, None], axis=1)[:, 0]
  count = jnp.sum(batch["weights"])
  return jnp.sum(nll * batch["weights"]) / jnp.maximum(count, 1.0), {"examples": count}
