"""GRAM batches grouped by the number of prompts they need, for training and for decoding.

An example with h history items needs 1 + min(h, F) prompts (the user prompt and F = `num_fine`
fine prompts, most recent first); the rest of the 1 + max_his prompts of `GramExamples.batch` are
all padding, which the encoder would still run through (on Beauty the mean history is 6.7 items,
so 2/3 of a 21-prompt batch is padding). So examples are grouped into a few buckets by that number:
bucket b holds the examples with buckets[b-1] < min(h, F) <= buckets[b], and its batches carry
N = 1 + buckets[b] prompts. Each bucket is one static shape (one compilation of the step or the
beam search); `buckets=()` is one bucket of N = 1 + F, i.e. plain fixed-shape batching. Since
histories are most recent first, cutting a batch to its first N prompts drops padding only.

Training order (`PromptBatches.epoch`): with rng = default_rng([seed, epoch]), each bucket's
examples are permuted and cut into batches (the last one padded with weight-0 rows), then the
batches of all buckets are permuted together. The plan is a pure function of (seed, epoch), so a
run resumes mid-epoch from its (epoch, batch) position alone, and the number of batches per epoch
is fixed. Gradients see batches of similar history length (a mild change from uniform shuffling
that the speed is worth on a CPU; `buckets=()` restores it).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from recsys_core import train
from gram_jax.data import GramExamples
from recsys_core.errors import ConfigError


def num_fine_prompts(examples: GramExamples, num_fine: int) -> np.ndarray:
  """[num_examples] int64 fine prompts each example gets: min(history length, num_fine), 0
  without item prompts."""
  if not examples.item_prompts:
    return np.zeros(len(examples), np.int64)
  return np.minimum(examples.examples.lengths, num_fine).astype(np.int64)


def bucket_bounds(buckets: Sequence[int], num_fine: int, item_prompts: bool = True) -> tuple:
  """The ascending fine-prompt bounds actually used: `buckets` below num_fine, then num_fine
  (0 alone without item prompts)."""
  if not item_prompts:
    return (0,)
  if num_fine < 1:
    raise ConfigError(f"num_fine={num_fine}: item prompts need at least one fine prompt (or set "
                     "item_prompts=False)")
  bounds = sorted({int(b) for b in buckets if 0 < int(b) < num_fine})
  return tuple(bounds) + (num_fine,)


def group_by_bucket(fine: np.ndarray, bounds: Sequence[int]) -> list[np.ndarray]:
  """Per bucket, the (ascending) indices of the examples whose fine-prompt count it holds."""
  which = np.searchsorted(np.asarray(bounds), fine, side="left")
  return [np.flatnonzero(which == b) for b in range(len(bounds))]


def model_inputs(examples: GramExamples, index: np.ndarray, num_prompts: int) -> dict:
  """{"input_ids": [b, num_prompts, L] int32, "labels": [b, T] int32} of examples `index`."""
  batch = examples.batch(index)
  return {"input_ids": np.ascontiguousarray(batch["input_ids"][:, :num_prompts]),
          "labels": batch["labels"]}


class PromptBatches:
  """Seeded, resumable epochs of bucketed training batches (see the module docstring).

  On several processes each one yields its own equal share of the rows of every global batch (the
  rows `recsys_core.train.global_batch` expects from it), as `seqrec.data.Batches` does.
  """

  def __init__(self, examples: GramExamples, batch_size: int, seed: int, num_fine: int,
               buckets: Sequence[int] = ()):
    train.check_batch_size(batch_size)
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.bounds = bucket_bounds(buckets, num_fine, examples.item_prompts)
    self.groups = group_by_bucket(num_fine_prompts(examples, num_fine), self.bounds)
    self.num_batches = sum(-(-len(g) // batch_size) for g in self.groups)

  def bucket_sizes(self) -> dict[int, int]:
    """{prompts per example N: number of examples} of every non-empty bucket."""
    return {1 + b: len(g) for b, g in zip(self.bounds, self.groups) if len(g)}

  def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """The epoch's batches in order: (bucket, [<= batch_size] example indices)."""
    rng = np.random.default_rng([self.seed, epoch])
    batches = []
    for b, group in enumerate(self.groups):
      order = group[rng.permutation(len(group))]
      batches += [(b, order[s:s + self.batch_size])
                  for s in range(0, len(order), self.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Host batches number start.. of `epoch`: {"input_ids", "labels", "weights" [b] float32}."""
    for bucket, index in self.plan(epoch)[start:]:
      rows, weights = train.process_rows(index, self.batch_size)
      batch = model_inputs(self.examples, rows, 1 + self.bounds[bucket])
      batch["weights"] = weights
      yield batch


def eval_batches(examples: GramExamples, batch_size: int, num_fine: int,
                 buckets: Sequence[int] = ()) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Decoding batches: (example indices [<= batch_size], input_ids [batch_size, N, L]), bucket by
  bucket in example order; a short last batch is filled with copies of its first row."""
  bounds = bucket_bounds(buckets, num_fine, examples.item_prompts)
  for bound, group in zip(bounds, group_by_bucket(num_fine_prompts(examples, num_fine), bounds)):
    for s in range(0, len(group), batch_size):
      index = group[s:s + batch_size]
      padded = np.concatenate([index, np.full(batch_size - len(index), index[0])])
      yield index, model_inputs(examples, padded, 1 + bound)["input_ids"]
