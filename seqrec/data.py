"""SASRec inputs on the host (numpy): training examples as RecBole builds them, and eval histories.

Training examples (RecBole's `SequentialDataset.prepare_data_augmentation` + leave-one-out): for
every user with training prefix seq[:t] (t = `core.splits.leave_one_out_train_lengths`), every
position j = 1..t-1 is one example: input seq[max(0, j - max_len):j] (the last max_len items before
j), target seq[j]. Inputs are RIGHT-padded with 0 and ids are shifted by one (item i -> i + 1).
The validation example of a user is seq[:t] -> seq[t]; the test example seq[:t+1] -> seq[t+1].

Batches: an epoch visits the examples in `np.random.default_rng([seed, epoch]).permutation`, so the
order of any epoch is a pure function of (seed, epoch) and a run resumes mid-epoch from its
(epoch, batch) position alone. The last batch is padded to the full batch size with weight-0 rows
(one compilation; the loss is the mean over real rows, like RecBole's smaller last batch).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from core import train
from core.dataset import Dataset
from core.splits import leave_one_out_train_lengths


def padded_windows(items: np.ndarray, ends: np.ndarray, lengths: np.ndarray, max_len: int
                   ) -> np.ndarray:
  """[n, max_len] int32 right-padded shifted ids: row k = items[ends[k]-lengths[k]:ends[k]] + 1.

  Args:
    items: [num_interactions] int item ids (a Dataset's flat `items`).
    ends: [n] int64 exclusive end positions in `items`.
    lengths: [n] int64 window lengths, each <= max_len.
  """
  offsets = np.arange(max_len)
  index = (ends - lengths)[:, None] + offsets[None, :]
  valid = offsets[None, :] < lengths[:, None]
  return np.where(valid, items[np.where(valid, index, 0)] + 1, 0).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Examples:
  """Training examples of a dataset: example k predicts items[targets[k]] from the lengths[k]
  items before it."""
  items: np.ndarray     # [num_interactions] int32, the Dataset's flat item ids
  targets: np.ndarray   # [num_examples] int64 positions of the target items in `items`
  lengths: np.ndarray   # [num_examples] int64 input lengths, 1..max_len
  max_len: int

  def __len__(self) -> int:
    return len(self.targets)

  def batch(self, index: np.ndarray) -> dict:
    """{"inputs": [b, max_len] int32, "targets": [b] int32 shifted ids} of examples `index`."""
    return {"inputs": padded_windows(self.items, self.targets[index], self.lengths[index],
                                     self.max_len),
            "targets": (self.items[self.targets[index]] + 1).astype(np.int32)}


def train_examples(ds: Dataset, max_len: int) -> Examples:
  """Every prefix of every user's leave-one-out training sequence (see the module docstring)."""
  t = leave_one_out_train_lengths(ds)
  user = ds.user_of_interaction()
  pos = np.arange(ds.num_interactions) - ds.indptr[user]
  is_target = (pos >= 1) & (pos < t[user])
  targets = np.flatnonzero(is_target).astype(np.int64)
  return Examples(items=ds.items, targets=targets,
                  lengths=np.minimum(pos[targets], max_len).astype(np.int64), max_len=max_len)


def eval_histories(ds: Dataset, max_len: int, which: str) -> np.ndarray:
  """[num_users, max_len] int32 right-padded shifted input sequence of every user.

  which: "valid" (seq[:t]) or "test" (seq[:t+1]); the last max_len items of it.
  """
  t = leave_one_out_train_lengths(ds)
  n = np.diff(ds.indptr)
  if which == "valid":
    stop = t
  elif which == "test":
    stop = np.minimum(t + 1, n)
  else:
    raise ValueError(f"which={which!r}: use 'valid' or 'test'")
  lengths = np.minimum(stop, max_len)
  return padded_windows(ds.items, ds.indptr[:-1] + stop, lengths, max_len)


class Batches:
  """Seeded, resumable epochs of fixed-size training batches of `Examples`.

  On several processes each one yields its own equal share of the rows of every global batch (the
  rows `core.train.global_batch` expects from it).
  """

  def __init__(self, examples: Examples, batch_size: int, seed: int):
    train.check_batch_size(batch_size)
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.num_batches = -(-len(examples) // batch_size)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Host batches number start.. of `epoch`: {"inputs", "targets", "weights" [b] float32}."""
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
    for b in range(start, self.num_batches):
      index, weights = train.process_rows(order[b * self.batch_size:(b + 1) * self.batch_size],
                                          self.batch_size)
      batch = self.examples.batch(index)
      batch["weights"] = weights
      yield batch
