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

Grouped prefixes (`group_prefixes=True`): within each bucket the examples are ordered by user (the
users in a seeded random order, each user's prefixes in time order) before the cut, so a batch
holds the consecutive prefixes of a few users, which share all but one item prompt. Another draw
from the same training distribution per epoch, but the examples of a batch are no longer
independent, which may affect accuracy: it is off by default (configs/gram.py).

Distinct prompts (`distinct_prompts=True`, `distinct_inputs`): the batch carries each distinct
item prompt of a group of rows once plus an index (the layout of gram_jax/t5.py), so the model
encodes U + batch prompts instead of batch * N. U is the largest group's number of distinct items,
rounded up by `unique_size` (a few static shapes: one compilation per (N, U)), computed from the
whole global batch so that every process agrees on it.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import jax
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


def unique_size(count: int, cap: int) -> int:
  """Rows for `count` distinct prompts, at most `cap` (>= count): count rounded up to a multiple of
  2^(floor(log2 count) - 3), i.e. 8 sizes per octave and at most 1/8 of the rows padding (grouped
  batches of 64 hold 64-70 distinct item prompts: a coarser 1, 2, 3, 4, 6, 8, ... padded them by a
  third)."""
  step = 1 << max(0, int(count).bit_length() - 4)
  return max(1, min(-(-count // step) * step, cap))


def distinct_inputs(examples: GramExamples, index: np.ndarray, num_prompts: int,
                    num_groups: int = 1, share: slice = slice(None)) -> dict:
  """The distinct-prompt inputs (gram_jax/t5.py) of one global batch, for the rows of `share`.

  Args:
    index: int [B] examples of the whole global batch (B a multiple of num_groups).
    num_prompts: N, prompts per example (the user prompt and N - 1 item slots).
    num_groups: G; group g is rows g * B / G ... (g + 1) * B / G, its distinct prompts its own.
    share: the rows to return, whole groups (a process's `recsys_core.train.process_share`).

  Returns:
    {"user_prompts": [b, L] int32, "item_prompts": [g, U, L] int32 (all-pad rows after each group's
    distinct prompts), "prompt_index": [b, N - 1] int32 (-1: no prompt), "labels": [b, T] int32}
    of the b rows of `share` and their g groups; U is the same for every share.
  """
  index = np.asarray(index)
  rows = len(index) // num_groups
  if rows * num_groups != len(index):
    raise ValueError(f"{len(index)} rows do not split into {num_groups} groups")
  fine = num_prompts - 1 if examples.item_prompts else 0
  if num_prompts < 1 or fine > examples.max_his or (not examples.item_prompts and num_prompts > 1):
    raise ValueError(f"num_prompts={num_prompts} for examples with {examples.num_prompts} prompts")
  history = examples.histories(index)
  slots = history[:, :fine].reshape(num_groups, rows * fine)
  items, slot_index = [], np.full(slots.shape, -1, np.int32)
  for g, group in enumerate(slots):
    real = group >= 0
    distinct, inverse = np.unique(group[real], return_inverse=True)
    items.append(distinct)
    slot_index[g, real] = inverse
  size = unique_size(max(map(len, items)), max(1, rows * fine))
  first, stop, _ = share.indices(len(index))
  if first % rows or stop % rows:
    raise ValueError(f"rows {first}:{stop} are not whole groups of {rows}")
  t = examples.tables
  item_prompts = np.full((stop // rows - first // rows, size, t.prompt_len), t.pad_id, np.int32)
  for out, distinct in zip(item_prompts, items[first // rows:stop // rows]):
    out[:len(distinct)] = t.item_prompts[distinct]
  target = examples.examples.items[examples.examples.targets[index[share]]]
  return {"user_prompts": examples.user_prompts(index[share], history[share]),
          "item_prompts": item_prompts,
          "prompt_index": slot_index.reshape(len(index), fine)[share],
          "labels": t.labels[target]}


class PromptBatches:
  """Seeded, resumable epochs of bucketed training batches (see the module docstring).

  On several processes each one yields its own equal share of the rows of every global batch (the
  rows `recsys_core.train.global_batch` expects from it), as `seqrec.data.Batches` does.
  group_prefixes and distinct_prompts: see the module docstring; num_groups: G of
  `distinct_inputs`, the number of devices (a multiple of the processes; divides batch_size).
  """

  def __init__(self, examples: GramExamples, batch_size: int, seed: int, num_fine: int,
               buckets: Sequence[int] = (), group_prefixes: bool = False,
               distinct_prompts: bool = False, num_groups: int = 1):
    train.check_batch_size(batch_size)
    if distinct_prompts and (batch_size % num_groups or num_groups % jax.process_count()):
      raise ConfigError(f"distinct prompts: batch_size={batch_size} must split into {num_groups} "
                        f"groups (one per device), whole groups per process")
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.group_prefixes = group_prefixes
    self.distinct_prompts = distinct_prompts
    self.num_groups = num_groups
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
      if self.group_prefixes:  # users in random order, each one's prefixes in time order
        rank = rng.permutation(int(self.examples.users.max(initial=-1)) + 1)
        order = group[np.lexsort((group, rank[self.examples.users[group]]))]
      else:
        order = group[rng.permutation(len(group))]
      batches += [(b, order[s:s + self.batch_size])
                  for s in range(0, len(order), self.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Host batches number start.. of `epoch`: {"input_ids" (or the distinct-prompt arrays),
    "labels", "weights" [b] float32}."""
    for bucket, index in self.plan(epoch)[start:]:
      num_prompts = 1 + self.bounds[bucket]
      if self.distinct_prompts:
        rows, weights = train.pad_rows(index, self.batch_size)
        share = train.process_share(self.batch_size)
        batch = distinct_inputs(self.examples, rows, num_prompts, self.num_groups, share)
        weights = weights[share]
      else:
        rows, weights = train.process_rows(index, self.batch_size)
        batch = model_inputs(self.examples, rows, num_prompts)
      batch["weights"] = weights
      yield batch


def eval_batches(examples: GramExamples, batch_size: int, num_fine: int,
                 buckets: Sequence[int] = (), distinct_prompts: bool = False,
                 num_groups: int = 1) -> Iterator[tuple[np.ndarray, Any]]:
  """Decoding batches: (example indices [<= batch_size], input_ids [batch_size, N, L] or, with
  distinct_prompts, the distinct-prompt dict of `distinct_inputs` without labels), bucket by
  bucket in example order; a short last batch is filled with copies of its first row. Every
  process gets the whole batch."""
  bounds = bucket_bounds(buckets, num_fine, examples.item_prompts)
  for bound, group in zip(bounds, group_by_bucket(num_fine_prompts(examples, num_fine), bounds)):
    for s in range(0, len(group), batch_size):
      index = group[s:s + batch_size]
      padded = np.concatenate([index, np.full(batch_size - len(index), index[0])])
      if distinct_prompts:
        inputs = distinct_inputs(examples, padded, 1 + bound, num_groups)
        del inputs["labels"]
        yield index, inputs
      else:
        yield index, model_inputs(examples, padded, 1 + bound)["input_ids"]
