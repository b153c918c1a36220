"""SASRec inputs on the host (numpy): training examples as RecBole builds them, and eval histories.

Training examples (RecBole's `SequentialDataset.data_augmentation` + leave-one-out): for every
user with training prefix seq[:t] (t = `recsys_core.splits.leave_one_out_train_lengths`), every
position j = 1..t-1 is one example: input seq[max(0, j - max_len):j] (the last max_len items before
j), target seq[j]. With prefixes="last" only j = t-1 is: one example per user, the official ACE
runs' protocol (their `run.sh` passes `--aug=False`, which keeps each user's last training prefix).
Inputs are RIGHT-padded with 0 and ids are shifted by one (item i -> i + 1).
The validation example of a user is seq[:t] -> seq[t]; the test example seq[:t+1] -> seq[t+1].

Batches: an epoch visits the examples in `np.random.default_rng([seed, epoch]).permutation`, so the
order of any epoch is a pure function of (seed, epoch) and a run resumes mid-epoch from its
(epoch, batch) position alone. The last batch is padded to the full batch size with weight-0 rows
(one compilation; the loss is the mean over real rows, like RecBole's smaller last batch).

Packing (optional, `Batches(pack_multiple=m)`): most inputs are far shorter than max_len (Amazon
Beauty: mean 8.4 of 50), so a batch's windows are packed several to a row of max_len positions
(first-fit decreasing) into the fewest rows, a multiple of m, that hold them. Each window keeps its
own positions 0..length-1 and attends only within itself (`seqrec.sasrec.attention_bias` with
segments), so its output, the loss and the gradient are those of the unpacked batch, in ~1/5 of the
positions on Amazon data (Beauty: 47 rows on average instead of 256). Each distinct row count is one
compiled shape (a handful per dataset).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from recsys_core import train
from recsys_core.dataset import Dataset
from recsys_core.splits import leave_one_out_train_lengths
from recsys_core.errors import ConfigError


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
    """{"inputs": [b, max_len] int32 right-padded shifted ids, "targets": [b] int32 shifted ids} of
    examples `index`."""
    return {"inputs": padded_windows(self.items, self.targets[index], self.lengths[index],
                                     self.max_len),
            "targets": (self.items[self.targets[index]] + 1).astype(np.int32)}


TRAIN_PREFIXES = ("all", "last")


def train_examples(ds: Dataset, max_len: int, prefixes: str = "all") -> Examples:
  """The training examples of `ds` (see the module docstring).

  prefixes: "all" (every prefix of each user's leave-one-out training sequence, RecBole's
  augmentation) | "last" (each user's last training prefix only).
  """
  if prefixes not in TRAIN_PREFIXES:
    raise ConfigError(f"config.train_prefixes={prefixes!r}: use 'all' (every prefix) or 'last' "
                      "(each user's last training prefix)")
  t = leave_one_out_train_lengths(ds)
  user = ds.user_of_interaction()
  pos = np.arange(ds.num_interactions) - ds.indptr[user]
  is_target = (pos >= 1) & (pos < t[user])
  if prefixes == "last":
    is_target &= pos == t[user] - 1
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


def trim_padding(seqs: np.ndarray, min_width: int = 8) -> np.ndarray:
  """Right-padded rows [b, max_len] cut to the next power of two (>= min_width, <= max_len) that
  holds the longest row: padding is never attended to, so the model's outputs at the real positions
  are unchanged, and the few widths compile once each."""
  longest = int((seqs != 0).sum(axis=1).max(initial=1))
  width = max(min_width, 1 << (longest - 1).bit_length())
  return seqs[:, :min(width, seqs.shape[1])]


def check_pack_multiple(multiple: int) -> int:
  """`multiple` validated: 0 (no packing) or a positive multiple of the number of processes."""
  if multiple < 0:
    raise ConfigError(f"config.pack_multiple={multiple}: use 0 (no packing) or a positive row count")
  if multiple:
    try:
      train.check_batch_size(multiple)
    except ValueError as e:
      raise ConfigError(f"config.pack_multiple={multiple}: {e}") from None
  return multiple


def first_fit_decreasing(lengths: np.ndarray, rows: int, width: int):
  """Places windows in `rows` rows of `width` positions, longest first, each in the first row
  with room.

  Args:
    lengths: [n] int window lengths, each <= width.

  Returns:
    (row [n], offset [n]) int64 placement of each window, or None when they do not fit.
  """
  free = np.full(rows, width)
  row, offset = np.empty(len(lengths), np.int64), np.empty(len(lengths), np.int64)
  for k in np.argsort(-lengths, kind="stable"):
    r = int(np.argmax(free >= lengths[k]))
    if free[r] < lengths[k]:
      return None
    row[k], offset[k], free[r] = r, width - free[r], free[r] - lengths[k]
  return row, offset


def pack_layout(lengths: np.ndarray, width: int, multiple: int) -> tuple:
  """(rows, row [n], offset [n]): the fewest rows, a multiple of `multiple`, holding the windows
  (n rows of one window each always do), and each window's place in them."""
  positions = -(-int(lengths.sum()) // width)           # rows if nothing were wasted
  rows = max(1, -(-positions // multiple)) * multiple
  while True:
    placed = first_fit_decreasing(lengths, rows, width)
    if placed is not None:
      return (rows, *placed)
    rows += multiple


class Batches:
  """Seeded, resumable epochs of fixed-size training batches of `Examples`.

  On several processes each one yields its own equal share of the rows of every global batch (the
  rows `recsys_core.train.global_batch` expects from it).
  """

  def __init__(self, examples: Examples, batch_size: int, seed: int, pack_multiple: int = 0):
    """pack_multiple: 0, one window per row; m > 0, windows packed into a multiple of m rows."""
    train.check_batch_size(batch_size)
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.pack_multiple = check_pack_multiple(pack_multiple)
    self.num_batches = -(-len(examples) // batch_size)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Host batches number start.. of `epoch`: {"inputs" [rows, max_len] int32 right-padded,
    "targets" [batch] int32, "weights" [batch] float32} with one window per row, or packed (see
    `packed`); this process's share of the rows of each array."""
    order = self._order(epoch)
    for b in range(start, self.num_batches):
      index, weights = self._batch_index(order, b)
      batch = self.packed(index) if self.pack_multiple else self.examples.batch(index)
      batch["weights"] = weights
      yield {name: value[train.process_share(len(value))] for name, value in batch.items()}

  def packed(self, index: np.ndarray) -> dict:
    """The windows of examples `index` [batch] packed in rows of max_len positions.

    Returns:
      {"inputs" [rows, max_len] int32 shifted ids (0: free position), "segments" [rows, max_len]
      int32 (k + 1 where window k lies, 0 elsewhere), "positions" [rows, max_len] int32 (position
      inside the window), "last" [batch] int32 flat position row * max_len + column of each
      window's last item, "targets" [batch] int32}.
    """
    width, lengths = self.examples.max_len, self.examples.lengths[index]
    rows, row, offset = pack_layout(lengths, width, self.pack_multiple)
    windows = self.examples.batch(index)
    column = np.arange(width)
    used = column[None, :] < lengths[:, None]                       # [batch, width]
    flat = (row * width + offset)[:, None] + column[None, :]
    out = {name: np.zeros((rows, width), np.int32) for name in ("inputs", "segments", "positions")}
    out["inputs"].flat[flat[used]] = windows["inputs"][used]
    out["segments"].flat[flat[used]] = np.broadcast_to(np.arange(1, len(index) + 1)[:, None],
                                                       used.shape)[used]
    out["positions"].flat[flat[used]] = np.broadcast_to(column, used.shape)[used]
    out["last"] = (row * width + offset + lengths - 1).astype(np.int32)
    out["targets"] = windows["targets"]
    return out

  def rows_per_batch(self, epoch: int = 0) -> np.ndarray:
    """[num_batches] rows of each batch of `epoch` (batch_size without packing)."""
    if not self.pack_multiple:
      return np.full(self.num_batches, self.batch_size)
    order = self._order(epoch)
    return np.array([pack_layout(self.examples.lengths[self._batch_index(order, b)[0]],
                                 self.examples.max_len, self.pack_multiple)[0]
                     for b in range(self.num_batches)])

  def _order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

  def _batch_index(self, order: np.ndarray, b: int) -> tuple:
    """(example indices [batch_size], weights) of batch b; the last batch padded with weight 0."""
    return train.pad_rows(order[b * self.batch_size:(b + 1) * self.batch_size], self.batch_size)
