"""Prefix trie of all valid item-ID token sequences, built once on the host as static arrays.

Every item's ID is a token sequence followed by EOS (IDs may have different lengths: collision
suffixes, multi-token words). States are trie nodes (0 = the root, before any ID token) numbered
depth by depth; edges are stored sorted by (state, token) in CSR form, so the children of state s
are the edges offsets[s] .. offsets[s] + degree[s] - 1. The edge that emits EOS ends an item and
carries its index. The beam search gathers at most `max_degree` edges per beam per step from these
arrays, so the table is O(total ID tokens) and never [states, vocab].
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class DeviceTrie:
  """The trie's arrays on the device (a pytree; sizes static).

  Attributes:
    offsets, degree: [num_states] int32 first edge and number of edges of each state.
    token, next_state: [num_edges] int32 token emitted by the edge and the state it leads to.
    item: [num_edges] int32 item index on EOS edges, -1 on the others.
    max_degree: the largest degree (candidates per beam per step).
    max_len: the longest ID including EOS (decoding steps).
    vocab_bound: 1 + the largest token (must not exceed the model's vocabulary).
  """
  offsets: jax.Array
  degree: jax.Array
  token: jax.Array
  next_state: jax.Array
  item: jax.Array
  max_degree: int = flax.struct.field(pytree_node=False)
  max_len: int = flax.struct.field(pytree_node=False)
  vocab_bound: int = flax.struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class Trie:
  """Host (numpy) trie; see the module docstring. Build it with `build_trie`.

  Attributes:
    offsets, degree, token, next_state, item: as in DeviceTrie.
    sequences: [num_items, max_len] int32 each item's tokens + EOS, right-padded with pad (0): the
      decoder labels of the items.
    lengths: [num_items] int32 tokens per item including EOS.
  """
  offsets: np.ndarray
  degree: np.ndarray
  token: np.ndarray
  next_state: np.ndarray
  item: np.ndarray
  sequences: np.ndarray
  lengths: np.ndarray

  @property
  def num_items(self) -> int:
    return len(self.lengths)

  @property
  def max_len(self) -> int:
    return self.sequences.shape[1]

  @property
  def max_degree(self) -> int:
    return int(self.degree.max())

  def device(self) -> DeviceTrie:
    return DeviceTrie(*(jnp.asarray(a) for a in (self.offsets, self.degree, self.token,
                                                  self.next_state, self.item)),
                      max_degree=self.max_degree, max_len=self.max_len,
                      vocab_bound=int(self.token.max()) + 1)

  def children(self, state: int) -> np.ndarray:
    """[degree] int32 edge indices of `state`."""
    return np.arange(self.offsets[state], self.offsets[state] + self.degree[state])

  def allowed_tokens(self, prefix: Sequence[int]) -> list[int]:
    """Tokens that may follow the ID prefix `prefix` (without the decoder start token); [] when the
    prefix is not the beginning of any ID or already ended with EOS."""
    state = 0
    for token in prefix:
      edges = self.children(state)
      hit = edges[self.token[edges] == token]
      if not len(hit) or self.item[hit[0]] >= 0:
        return []
      state = self.next_state[hit[0]]
    return self.token[self.children(state)].tolist()


def build_trie(sequences: Sequence[Sequence[int]], eos_id: int = 1, pad_id: int = 0,
               vocab_size: Optional[int] = None) -> Trie:
  """The trie of item IDs.

  Args:
    sequences: item i's ID tokens, WITHOUT EOS (it is appended); at least one token each.
    eos_id, pad_id: T5's EOS (1) and padding (0) ids, which may not occur inside an ID.
    vocab_size: if given, every token must be below it.

  Raises:
    ValueError: an empty ID, EOS/pad or an out-of-vocabulary token inside an ID, or two items with
      the same ID (the message names them).
  """
  if not len(sequences):
    raise ValueError("no item IDs to build the trie from")
  lengths = np.array([len(s) + 1 for s in sequences], np.int32)
  seqs = np.full((len(sequences), lengths.max()), pad_id, np.int64)
  for i, s in enumerate(sequences):
    if not len(s):
      raise ValueError(f"item {i} has an empty ID")
    seqs[i, :len(s)] = s
    seqs[i, len(s)] = eos_id
  body = np.arange(seqs.shape[1])[None, :] < lengths[:, None] - 1
  bad = body & ((seqs == eos_id) | (seqs == pad_id) | (seqs < 0)
                | (vocab_size is not None and seqs >= vocab_size))
  if bad.any():
    i, t = np.argwhere(bad)[0]
    raise ValueError(f"item {i} has token {seqs[i, t]} at position {t} of its ID: EOS ({eos_id}), "
                     f"pad ({pad_id}) and ids outside the vocabulary ({vocab_size}) are refused")

  state = np.zeros(len(seqs), np.int64)  # each item's trie state after the tokens so far
  parents, tokens, children, items = [], [], [], []
  num_states = 1
  for t in range(seqs.shape[1]):
    active = np.flatnonzero(lengths > t)
    pairs, inverse, counts = np.unique(np.stack([state[active], seqs[active, t]], 1), axis=0,
                                       return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    ends = pairs[:, 1] == eos_id
    if np.any(ends & (counts > 1)):
      dup = active[inverse == np.flatnonzero(ends & (counts > 1))[0]]
      raise ValueError(f"items {dup.tolist()} have the same ID {seqs[dup[0], :t].tolist()}; IDs "
                       "must be unique (add collision suffixes)")
    new = num_states + np.arange(len(pairs))
    num_states += len(pairs)
    state[active] = new[inverse]
    edge_item = np.full(len(pairs), -1)
    edge_item[inverse[ends[inverse]]] = active[ends[inverse]]
    parents.append(pairs[:, 0])
    tokens.append(pairs[:, 1])
    children.append(new)
    items.append(edge_item)
  parents, tokens, children, items = (np.concatenate(a) for a in (parents, tokens, children, items))
  order = np.lexsort((tokens, parents))  # np.unique already sorts within a depth; keep it explicit
  degree = np.bincount(parents, minlength=num_states)
  offsets = np.concatenate([[0], np.cumsum(degree)[:-1]])
  as32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)
  return Trie(offsets=as32(offsets), degree=as32(degree), token=as32(tokens[order]),
              next_state=as32(children[order]), item=as32(items[order]),
              sequences=as32(seqs), lengths=lengths)
