"""BERT4Rec's training examples on the host (numpy): cloze masking as RecBole's MaskItemSequence.

Windows (`cloze_windows`), config.model.cloze_windows:
  "prefixes"   RecBole: its sequential dataset is augmented for every model, so BERT4Rec trains on
               the inputs of SASRec's examples (`seqrec.data.train_examples`: seq[max(0, j -
               max_len):j] for j = 1..t-1, or only j = t-1 with config.train_prefixes="last";
               the next-item target is not used).
  "sequences"  the original BERT4Rec: one window per user, the last max_len items of the training
               prefix seq[:t].

Masking (RecBole `data/transform.py` MaskItemSequence, per batch):
- with probability ft_ratio the batch is a "fine-tuning" batch: each window's LAST item is masked;
- otherwise every real item is masked independently with probability mask_ratio;
- masked items become the mask id (num_items + 1); m = int(mask_ratio * max_len) slots per window
  hold the masked columns, right-aligned; when more than m items are masked only the last m are
  predicted (the earlier ones stay masked in the input), and a masked item at column 0 is never
  predicted (RecBole pads the slots with column 0 and keeps `masked_index > 0`).
Randomness: the epoch's order is `np.random.default_rng([seed, epoch]).permutation`, batch b's masks
come from `np.random.default_rng([seed, epoch, b])`, drawn for the whole global batch, so a batch is
a pure function of (seed, epoch, b) and a resumed run (or one on more processes) sees the same ones.
Packing (pack_multiple > 0): the windows of a batch packed several to a row as `seqrec.data.Batches`
does; each keeps positions 0..length-1 and attends only within itself.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from recsys_core import train
from recsys_core.dataset import Dataset
from recsys_core.errors import ConfigError
from recsys_core.splits import leave_one_out_train_lengths
from seqrec import data as data_lib

WINDOWS = ("prefixes", "sequences")


@dataclasses.dataclass(frozen=True)
class Windows:
  """Training windows: window k is items[ends[k] - lengths[k]:ends[k]] (shifted by one)."""
  items: np.ndarray     # [num_interactions] int32, the Dataset's flat item ids
  ends: np.ndarray      # [n] int64 exclusive end positions in `items`
  lengths: np.ndarray   # [n] int64 window lengths, 1..max_len
  max_len: int

  def __len__(self) -> int:
    return len(self.ends)

  def batch(self, index: np.ndarray) -> np.ndarray:
    """[len(index), max_len] int32 right-padded shifted ids."""
    return data_lib.padded_windows(self.items, self.ends[index], self.lengths[index], self.max_len)


def cloze_windows(ds: Dataset, max_len: int, kind: str = "prefixes", prefixes: str = "all"
                  ) -> Windows:
  """The training windows of `ds` under leave-one-out (see the module docstring); with kind
  "prefixes", the inputs of `seqrec.data.train_examples(ds, max_len, prefixes)`."""
  if kind == "prefixes":
    ex = data_lib.train_examples(ds, max_len, prefixes)
    return Windows(ex.items, ex.targets, ex.lengths, max_len)
  if kind == "sequences":
    t = leave_one_out_train_lengths(ds)
    users = np.flatnonzero(t >= 2)  # a lone item at column 0 is never predicted (see above)
    return Windows(ds.items, (ds.indptr[users] + t[users]).astype(np.int64),
                   np.minimum(t[users], max_len).astype(np.int64), max_len)
  raise ConfigError(f"config.model.cloze_windows={kind!r}: use 'prefixes' (RecBole) or 'sequences'")


def mask_slots(mask_ratio: float, max_len: int) -> int:
  """m = int(mask_ratio * max_len), RecBole's mask_item_length, checked to be >= 1."""
  slots = int(mask_ratio * max_len)
  if not 0 < mask_ratio < 1 or slots < 1:
    raise ConfigError(f"config.model.mask_ratio={mask_ratio} with max_len={max_len} leaves "
                      f"int(mask_ratio * max_len)={slots} masked slots; use 0 < mask_ratio < 1 "
                      "with mask_ratio * max_len >= 1")
  return slots


def mask_windows(windows: np.ndarray, rng: np.random.Generator, mask_id: int, mask_ratio: float,
                 ft_ratio: float, slots: int) -> dict:
  """RecBole's MaskItemSequence on one batch of right-padded windows.

  Args:
    windows: [b, width] int32 right-padded shifted ids (every row has >= 1 item).
    rng: the batch's generator.
    slots: m, masked items predicted per window.

  Returns:
    {"inputs": [b, width] int32 masked windows, "columns": [b, m] int32 column of each predicted
    item (0 in empty slots), "targets": [b, m] int32 its shifted id, "weights": [b, m] float32 1 for
    predicted items}.
  """
  b, width = windows.shape
  lengths = (windows != 0).sum(axis=1)
  if rng.random() < ft_ratio:
    masked = np.arange(width)[None, :] == (lengths - 1)[:, None]
  else:
    masked = (rng.random((b, width)) < mask_ratio) & (windows != 0)
  from_end = np.cumsum(masked[:, ::-1], axis=1)[:, ::-1]   # masked items at columns >= c
  kept = masked & (from_end <= slots)
  row, column = np.nonzero(kept)
  slot = slots - from_end[row, column]                      # the last masked item -> slot m - 1
  columns = np.zeros((b, slots), np.int32)
  targets = np.zeros((b, slots), np.int32)
  columns[row, slot] = column
  targets[row, slot] = windows[row, column]
  return {"inputs": np.where(masked, mask_id, windows).astype(np.int32), "columns": columns,
          "targets": targets, "weights": (columns > 0).astype(np.float32)}


class ClozeBatches:
  """Seeded, resumable epochs of fixed-size cloze batches of `Windows` (the interface of
  `seqrec.data.Batches` that `recsys_core.loop.train_loop` uses)."""

  def __init__(self, examples: Windows, batch_size: int, seed: int, mask_id: int,
               mask_ratio: float, ft_ratio: float, pack_multiple: int = 0):
    train.check_batch_size(batch_size)
    if not 0 <= ft_ratio <= 1:
      raise ConfigError(f"config.model.ft_ratio={ft_ratio}: must lie in [0, 1]")
    self.examples = examples
    self.batch_size = batch_size
    self.seed = seed
    self.mask_id, self.mask_ratio, self.ft_ratio = mask_id, mask_ratio, ft_ratio
    self.slots = mask_slots(mask_ratio, examples.max_len)
    self.pack_multiple = data_lib.check_pack_multiple(pack_multiple)
    self.num_batches = -(-len(examples) // batch_size)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Host batches number start.. of `epoch`: {"inputs" [rows, max_len] int32 (+ "segments",
    "positions" when packed), "index" [batch, m] int32 flat position row * max_len + column of
    each predicted item, "targets" [batch, m] int32, "weights" [batch, m] float32}; this process's
    share of the rows of each array."""
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
    for b in range(start, self.num_batches):
      batch = self.batch(order, epoch, b)
      yield {name: value[train.process_share(len(value))] for name, value in batch.items()}

  def batch(self, order: np.ndarray, epoch: int, b: int) -> dict:
    """The whole global batch b of `epoch` (before the process split)."""
    index, real = train.pad_rows(order[b * self.batch_size:(b + 1) * self.batch_size],
                                 self.batch_size)
    windows = self.examples.batch(index)
    out = mask_windows(windows, np.random.default_rng([self.seed, epoch, b]), self.mask_id,
                       self.mask_ratio, self.ft_ratio, self.slots)
    columns = out.pop("columns")
    out["weights"] *= real[:, None]                    # the rows padding the last batch
    width = self.examples.max_len
    if not self.pack_multiple:
      start = np.arange(self.batch_size) * width
    else:
      lengths = self.examples.lengths[index]
      rows, row, offset = data_lib.pack_layout(lengths, width, self.pack_multiple)
      start = row * width + offset
      column = np.arange(width)
      used = column[None, :] < lengths[:, None]
      flat = start[:, None] + column[None, :]
      packed = {name: np.zeros((rows, width), np.int32) for name in ("inputs", "segments",
                                                                       "positions")}
      packed["inputs"].flat[flat[used]] = out["inputs"][used]
      packed["segments"].flat[flat[used]] = np.broadcast_to(
          np.arange(1, len(index) + 1)[:, None], used.shape)[used]
      packed["positions"].flat[flat[used]] = np.broadcast_to(column, used.shape)[used]
      out.update(packed)
    out["index"] = (start[:, None] + columns).astype(np.int32)
    return out

  def rows_per_batch(self, epoch: int = 0) -> np.ndarray:
    """[num_batches] rows of each batch of `epoch` (batch_size without packing)."""
    if not self.pack_multiple:
      return np.full(self.num_batches, self.batch_size)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
    return np.array([data_lib.pack_layout(
        self.examples.lengths[train.pad_rows(order[b * self.batch_size:(b + 1) * self.batch_size],
                                             self.batch_size)[0]],
        self.examples.max_len, self.pack_multiple)[0] for b in range(self.num_batches)])
