"""Teacher-forced sequence-to-sequence loss of the T5 (GRAM's training objective).

The decoder input is the label sequence shifted right behind the decoder start token (T5: pad 0),
and the loss is the cross-entropy of every real label token, averaged over the real tokens of the
global batch (Hugging Face's `labels` loss with padding ignored). `seq2seq_loss` has the signature
of `recsys_core.train.make_train_step`'s loss functions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gram_jax import t5


def shift_right(labels: jax.Array, start_token_id: int = 0) -> jax.Array:
  """[batch, T] labels -> [batch, T] decoder inputs: start token, then labels[:, :-1]."""
  start = jnp.full((labels.shape[0], 1), start_token_id, labels.dtype)
  return jnp.concatenate([start, labels[:, :-1]], axis=1)


def prompts_of(batch: dict) -> Any:
  """A batch's prompts: its "input_ids" [b, N, L], or its distinct-prompt arrays
  (`t5.DISTINCT_KEYS`, see gram_jax/t5.py) as one dict."""
  if "input_ids" in batch:
    return batch["input_ids"]
  return {k: batch[k] for k in t5.DISTINCT_KEYS}


def token_log_probs(model: t5.T5, params: Any, input_ids: Any, labels: jax.Array,
                    deterministic: bool = True, rng: jax.Array | None = None) -> jax.Array:
  """[batch, T] log P(label_t | labels_<t, prompts) under teacher forcing (pad positions included).

  Args:
    input_ids: [batch, N, L] int32 prompts, or a distinct-prompt dict (`prompts_of`).
    labels: [batch, T] int32 target tokens ending with EOS, right-padded with pad (0).
  """
  pad = model.config.pad_token_id
  rngs = None if deterministic else {"dropout": rng}
  logits = model.apply({"params": params}, input_ids, shift_right(labels, pad),
                       deterministic=deterministic, rngs=rngs)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def sequence_log_probs(model: t5.T5, params: Any, input_ids: jax.Array,
                       labels: jax.Array) -> jax.Array:
  """[batch] log-probability of each whole label sequence (sum over its non-pad tokens)."""
  logp = token_log_probs(model, params, input_ids, labels)
  return jnp.sum(jnp.where(labels != model.config.pad_token_id, logp, 0.0), axis=1)


def seq2seq_loss(model: t5.T5, params: Any, batch: dict, rng: jax.Array) -> tuple:
  """Mean token cross-entropy with dropout (training mode).

  Args:
    batch: {"input_ids": [b, N, L] int32 prompts (or the distinct-prompt arrays, `prompts_of`),
      "labels": [b, T] int32 target ID tokens + EOS, right-padded with 0, optionally "weights":
      [b] float32 (0 for rows padding the last batch)}.
    rng: dropout key.

  Returns:
    (loss, {"examples": real examples, "tokens": real label tokens}).
  """
  labels = batch["labels"]
  logp = token_log_probs(model, params, prompts_of(batch), labels, deterministic=False, rng=rng)
  weights = (labels != model.config.pad_token_id).astype(jnp.float32)
  examples = jnp.float32(labels.shape[0])
  if "weights" in batch:
    weights = weights * batch["weights"][:, None]
    examples = jnp.sum(batch["weights"])
  tokens = jnp.sum(weights)
  return -jnp.sum(logp * weights) / jnp.maximum(tokens, 1.0), {"examples": examples,
                                                                 "tokens": tokens}
