"""Trie-constrained beam search over item IDs (GRAM's decoding), one jit-compiled lax loop.

Per user, the encoder runs once on its N prompts and the decoder's cross-attention keys/values are
computed once from that output; all beams of the user share them (the beams' queries form one
matmul against them). Given the distinct-prompt form of a batch (gram_jax/t5.py), an item prompt
that several users of the batch share is encoded once. The decoder runs incrementally with a
self-attention KV cache of static length `trie.max_len`, reordered with the beams each step.
(Recomputing the decoder over the whole static-length prefix each step instead needs no cache, but
runs every step over all `max_len` positions, so decoding an ID costs about `max_len` times the
decoder work: the cache stays.)

Step t, for each of the `num_beams` live hypotheses (prefix p, log-probability s, trie state):
  candidates = the children of the state in the trie: s + log P(token | p, prompts). The
  log-probabilities are normalised over the whole vocabulary (as Hugging Face's
  `prefix_allowed_tokens_fn` does): tokens that leave the trie are simply never candidates, so
  an invalid continuation carries zero probability mass into any result.
  EOS candidates finish an item: they join the pool of finished items, which keeps the best
  `num_beams`; all other candidates compete for the `num_beams` live slots.
The loop stops after `max_len` steps, or as soon as, for every user, no live prefix scores above
the worst pooled item (log-probabilities only fall as a prefix grows, so none could enter).
Unlike Hugging Face (which only pools EOS candidates ranked among the top `num_beams` of a step)
every EOS candidate is offered to the pool. With length_penalty = 0 (default) items are ranked by
their full sequence log-probability; length_penalty = a ranks finished items by
log P / len**a (len = ID tokens + EOS, Hugging Face's convention) and disables the early stop.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gram_jax import t5
from gram_jax.trie import DeviceTrie
from recsys_core.errors import ConfigError


@functools.partial(jax.jit, static_argnames=("model", "num_beams", "length_penalty"))
def constrained_beam_search(model: t5.T5, params: Any, trie: DeviceTrie, input_ids: Any,
                            num_beams: int, length_penalty: float = 0.0) -> tuple:
  """Top `num_beams` items per user under the trie constraint.

  Args:
    model: the T5 (its config's pad token is the decoder start token).
    params: its parameters.
    trie: `Trie.device()` of the valid item IDs (tokens < vocab_size).
    input_ids: [batch, N, L] int32 prompts of each user (late fusion), or their distinct-prompt
      dict (`gram_jax.batching.distinct_inputs`).
    num_beams: beam size = number of items returned (static, like model and length_penalty:
      one compilation per value).
    length_penalty: see the module docstring.

  Returns:
    items: [batch, num_beams] int32 item indices, best first; -1 in slots left empty (fewer items
      reachable than beams).
    scores: [batch, num_beams] float32 their log-probabilities (divided by len**length_penalty),
      non-increasing; -inf in empty slots.
  """
  config = model.config
  if num_beams < 1:
    raise ConfigError(f"num_beams={num_beams}; it must be at least 1")
  if trie.vocab_bound > config.vocab_size:
    raise ValueError(f"the trie has token {trie.vocab_bound - 1}, outside the model's vocabulary "
                     f"of {config.vocab_size}")
  beams, degree = num_beams, trie.max_degree
  variables = {"params": params}
  cross_kv, encoder_mask = model.apply(variables, input_ids, method=t5.T5.late_fusion)
  batch = encoder_mask.shape[0]
  neg_inf = jnp.float32(-jnp.inf)

  def step(carry: dict) -> dict:
    position = carry["position"]
    logits, cache = model.apply(variables, carry["tokens"].reshape(-1), position, carry["cache"],
                                cross_kv, encoder_mask, beams, method=t5.T5.decode_step)
    edges, scores = expand(trie, carry["states"], carry["scores"],
                           logits.reshape(batch, beams, -1))
    items = trie.item[edges]
    ends = items >= 0

    live_scores, pick = jax.lax.top_k(jnp.where(ends, neg_inf, scores), beams)
    edge = jnp.take_along_axis(edges, pick, axis=1)
    parent = pick // degree
    cache = jax.tree.map(lambda c: _gather_beams(c, parent), cache)

    done = jnp.where(ends, scores, neg_inf)
    if length_penalty:
      done = done / (position + 1).astype(jnp.float32) ** length_penalty
    pool_scores, pick = jax.lax.top_k(jnp.concatenate([carry["pool_scores"], done], 1), beams)
    pool_items = jnp.take_along_axis(jnp.concatenate([carry["pool_items"], items], 1), pick, 1)
    return {"position": position + 1, "tokens": trie.token[edge],
            "states": trie.next_state[edge], "scores": live_scores, "cache": cache,
            "pool_items": pool_items, "pool_scores": pool_scores}

  def running(carry: dict) -> jax.Array:
    best_live = carry["scores"].max(axis=1)
    if length_penalty:
      hopeless = best_live == neg_inf
    else:
      hopeless = best_live <= carry["pool_scores"].min(axis=1)
    return (carry["position"] < trie.max_len) & ~jnp.all(hopeless)

  first = jnp.where(jnp.arange(beams) == 0, 0.0, neg_inf)  # one live root, no duplicate beams
  carry = {"position": jnp.int32(0),
           "tokens": jnp.full((batch, beams), config.pad_token_id, jnp.int32),
           "states": jnp.zeros((batch, beams), jnp.int32),
           "scores": jnp.tile(first[None], (batch, 1)).astype(jnp.float32),
           "cache": t5.init_cache(config, batch * beams, trie.max_len),
           "pool_items": jnp.full((batch, beams), -1, jnp.int32),
           "pool_scores": jnp.full((batch, beams), neg_inf, jnp.float32)}
  carry = jax.lax.while_loop(running, step, carry)
  scores = carry["pool_scores"]
  return jnp.where(scores > neg_inf, carry["pool_items"], -1), scores


def expand(trie: DeviceTrie, states: jax.Array, scores: jax.Array, logits: jax.Array) -> tuple:
  """Every hypothesis's trie continuations and their scores.

  Args:
    states: [batch, beams] int32 trie state of each hypothesis.
    scores: [batch, beams] float32 its log-probability (-inf: no hypothesis).
    logits: [batch, beams, vocab] next-token logits.

  Returns:
    edges: [batch, beams * max_degree] int32 trie edge of each candidate (slot d of beam k at
      k * max_degree + d; slots beyond a state's degree point at edge 0 and score -inf).
    scores: [batch, beams * max_degree] float32 score + log softmax(logits)[edge token], the
      softmax over the WHOLE vocabulary; tokens outside the trie are never candidates.
  """
  batch, beams, _ = logits.shape
  degree = trie.max_degree
  edges = trie.offsets[states][..., None] + jnp.arange(degree)
  valid = jnp.arange(degree) < trie.degree[states][..., None]
  edges = jnp.where(valid, edges, 0)
  log_prob = (jnp.take_along_axis(logits, trie.token[edges], axis=-1)
              - jax.nn.logsumexp(logits, axis=-1, keepdims=True))
  scores = jnp.where(valid, scores[..., None] + log_prob, -jnp.inf)
  return edges.reshape(batch, beams * degree), scores.reshape(batch, beams * degree)


def _gather_beams(cache: jax.Array, parent: jax.Array) -> jax.Array:
  """cache [layers, batch * beams, ...] -> the rows of each new beam's parent beam."""
  layers = cache.shape[0]
  batch, beams = parent.shape
  c = cache.reshape(layers, batch, beams, *cache.shape[2:])
  index = parent.reshape(1, batch, beams, *([1] * (cache.ndim - 2)))
  return jnp.take_along_axis(c, index, axis=2).reshape(cache.shape)
