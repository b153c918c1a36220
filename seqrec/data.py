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

Length tiers (optional, `Batches(tiers=...)`): most inputs are far shorter than max_len (Amazon
Beauty: mean 8.4 of 50), and with right padding a window cut to its own length gives the same
outputs (attention is causal and masks padded keys). A batch is then split into fixed-size tiers of
increasing width, shortest examples first, so the step computes ~1/2.5 of the padded positions
(configs/ace.py's Amazon tiers) while the batch, its loss and its gradient stay those of the
untiered batch. A batch whose examples do not fit the tiers is sent untiered (a second compiled
shape).
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

  def batch(self, index: np.ndarray, width: int = 0) -> dict:
    """{"inputs": [b, width] int32, "targets": [b] int32 shifted ids} of examples `index`.

    width: columns of the inputs (0: max_len); longer windows keep their last `width` items.
    """
    width = width or self.max_len
    return {"inputs": padded_windows(self.items, self.targets[index],
                                     np.minimum(self.lengths[index], width), width),
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


def check_tiers(tiers, batch_size: int, max_len: int) -> tuple:
  """((width, rows), ...) validated; () means one tier (max_len, batch_size).

  Raises ValueError (naming config.length_tiers) unless widths increase up to max_len, rows sum to
  batch_size and every tier's rows split equally over the processes.
  """
  tiers = tuple((int(w), int(r)) for w, r in tiers) or ((max_len, batch_size),)
  widths = [w for w, _ in tiers]
  problem = None
  if widths != sorted(set(widths)) or widths[0] < 1 or widths[-1] != max_len:
    problem = f"widths {widths} must increase and end at max_len={max_len}"
  elif min(r for _, r in tiers) < 1 or sum(r for _, r in tiers) != batch_size:
    problem = f"rows must be >= 1 and sum to batch_size={batch_size}"
  if problem:
    raise ValueError(f"config.length_tiers={tiers}: {problem}")
  for _, rows in tiers:
    try:
      train.check_batch_size(rows)
    except ValueError as e:
      raise ValueError(f"config.length_tiers={tiers}: {e}") from None
  return tiers


def tier_rows(lengths: np.ndarray, tiers: tuple):
  """Rows of one global batch per tier, or None when they do not fit.

  Args:
    lengths: [batch_size] int input lengths of the batch's rows.
    tiers: `check_tiers` output.

  Returns:
    A list with one int array of row positions per tier (sizes: the tiers' rows; shortest rows in
    the first tier), or None when some row is longer than its tier's width.
  """
  if len(tiers) == 1:
    return [np.arange(len(lengths))]
  by_length = np.argsort(lengths, kind="stable")
  bounds = np.cumsum([0] + [rows for _, rows in tiers])
  out = [by_length[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
  fits = all(lengths[rows].max() <= width for rows, (width, _) in zip(out, tiers))
  return out if fits else None


class Batches:
  """Seeded, resumable epochs of fixed-size training batches of `Examples`.

  On several processes each one yields its own equal share of the rows of every global batch (the
  rows `core.train.global_batch` expects from it).
  """

  def __init__(self, examples: Examples, batch_size: int, seed: int, tiers=()):
    """tiers: ((width, rows), ...) length tiers (module docstring; `check_tiers`), () for none."""
    train.check_batch_size(batch_size)
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.tiers = check_tiers(tiers, batch_size, examples.max_len)
    self.untiered = ((examples.max_len, batch_size),)
    self.num_batches = -(-len(examples) // batch_size)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple]:
    """Host batches number start.. of `epoch`: a tuple with one dict per tier (one without
    tiers), each {"inputs" [rows, width] int32, "targets" [rows] int32, "weights" [rows] float32}
    holding this process's share of the tier's rows."""
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
    for b in range(start, self.num_batches):
      chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
      index, weights, rows, tiers = self._plan(chunk)
      yield tuple(self._share(index, weights, tier, width)
                  for tier, (width, _) in zip(rows, tiers))

  def tiered_fraction(self, epoch: int = 0) -> float:
    """Share of the batches of `epoch` that fit the tiers (the others run untiered)."""
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
    return float(np.mean([self._plan(order[s:s + self.batch_size])[3] == self.tiers
                          for s in range(0, len(order), self.batch_size)]))

  def _plan(self, chunk: np.ndarray) -> tuple:
    """(index [batch_size], weights, row positions per tier, tiers) of one batch's examples."""
    index, weights = train.pad_rows(chunk, self.batch_size)
    # rows padding the last batch count as one item long (their content is never used)
    rows = tier_rows(np.where(weights > 0, self.examples.lengths[index], 1), self.tiers)
    if rows is None:
      return index, weights, [np.arange(self.batch_size)], self.untiered
    return index, weights, rows, self.tiers

  def _share(self, index: np.ndarray, weights: np.ndarray, tier: np.ndarray, width: int) -> dict:
    """This process's rows of one tier (global row positions `tier`) as a host batch."""
    mine = tier[train.process_share(len(tier))]
    batch = self.examples.batch(index[mine], width)
    batch["weights"] = weights[mine]
    return batch
