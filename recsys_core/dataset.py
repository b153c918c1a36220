"""The one dataset type of the project, and the split type every protocol produces.

`Dataset` holds all interactions of a dataset as per-user chronological sequences in CSR form
(dense 0-based ids, maps back to the raw string ids) plus optional item text. Split builders
(`recsys_core/splits.py`) turn a `Dataset` into a `Split`: sparse binary user x item matrices that the
linear autoencoders fit on, and evaluation sets of (fold-in, target) matrices.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from recsys_core.errors import DataError  # noqa: F401  (re-exported: readers raise it)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Interactions of `num_users` users with `num_items` items.

  Attributes:
    name: dataset name (e.g. "ml-100k").
    user_ids: [num_users] raw user ids (str), index = dense user id.
    item_ids: [num_items] raw item ids (str), index = dense item id.
    indptr: [num_users + 1] int64; user u's interactions are positions indptr[u]:indptr[u+1].
    items: [num_interactions] int32 dense item ids, chronological within each user.
    timestamps: [num_interactions] float64 or None (None when the format has no time; then the
      file order is taken as chronological).
    ratings: [num_interactions] float32 or None.
    item_text: field name -> [num_items] list of str (or None where unknown), e.g. "title".
    source: the interactions file it was read from ("" when generated), for error messages.
  """

  name: str
  user_ids: np.ndarray
  item_ids: np.ndarray
  indptr: np.ndarray
  items: np.ndarray
  timestamps: Optional[np.ndarray] = None
  ratings: Optional[np.ndarray] = None
  item_text: Mapping[str, Sequence[Optional[str]]] = dataclasses.field(default_factory=dict)
  source: str = ""

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def num_interactions(self) -> int:
    return len(self.items)

  def sequence(self, user: int) -> np.ndarray:
    """[len] int32 chronological item ids of one user."""
    return self.items[self.indptr[user]:self.indptr[user + 1]]

  def first_users(self, num_users: int) -> "Dataset":
    """The dataset of users 0..num_users-1 only (same item catalogue), e.g. for a quick timing."""
    stop = self.indptr[num_users]
    cut = lambda x: None if x is None else x[:stop]
    return dataclasses.replace(self, user_ids=self.user_ids[:num_users],
                               indptr=self.indptr[:num_users + 1], items=self.items[:stop],
                               timestamps=cut(self.timestamps), ratings=cut(self.ratings))

  def user_of_interaction(self) -> np.ndarray:
    """[num_interactions] int32 dense user id of every interaction."""
    return np.repeat(np.arange(self.num_users, dtype=np.int32), np.diff(self.indptr))

  def to_matrix(self) -> sp.csr_matrix:
    """Binary [num_users, num_items] float32 CSR matrix (repeats collapse to 1)."""
    return binary_matrix(self.user_of_interaction(), self.items, self.num_users, self.num_items)


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Users to evaluate: `fold_in` items are given to the model and excluded from the ranking;
  `target` items are to be predicted. Both [num_eval_users, num_items] binary float32 CSR.

  `target_order`, optional [target.nnz] int32: the target items row after row, each row's in the
  order the data gave them (file order of a presplit folder; `ordered_row_items`), where CSR keeps
  them sorted by id. The unbiased metrics' denominators depend on it (the official RLAE code takes
  a user's first min(k, |T|) test items in file order). None: ascending item id.
  """

  fold_in: sp.csr_matrix
  target: sp.csr_matrix
  target_order: Optional[np.ndarray] = None

  @property
  def num_users(self) -> int:
    return self.fold_in.shape[0]


@dataclasses.dataclass(frozen=True)
class Split:
  """A protocol's split.

  Attributes:
    train: [num_train_users, num_items] binary CSR the model is fit on for the test evaluation.
    test: evaluation set for the reported numbers.
    valid: evaluation set for model selection, or None.
    valid_train: the matrix to fit on when evaluating `valid` (weak generalization holds the
      validation items out of the training rows); None means `train`.
    protocol: "strong", "weak" or "loo"; decides the Recall normalisation in reports.
  """

  train: sp.csr_matrix
  test: EvalSet
  valid: Optional[EvalSet] = None
  valid_train: Optional[sp.csr_matrix] = None
  protocol: str = "strong"

  @property
  def num_items(self) -> int:
    return self.train.shape[1]

  def item_counts(self) -> np.ndarray:
    """[num_items] int64 number of training users of each item (defines head/tail)."""
    return np.asarray(self.train.sum(axis=0)).ravel().astype(np.int64)


def ordered_row_items(rows: np.ndarray, cols: np.ndarray, num_cols: int) -> np.ndarray:
  """[nnz] int32 distinct cols of each row in their first-seen order, row after row: the
  `EvalSet.target_order` of `binary_matrix(rows, cols, ...)` (repeats keep their first place)."""
  rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
  _, first = np.unique(rows * num_cols + cols, return_index=True)
  first = np.sort(first)
  first = first[np.argsort(rows[first], kind="stable")]
  return cols[first].astype(np.int32)


def binary_matrix(rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int) -> sp.csr_matrix:
  """Binary float32 CSR matrix with ones at (rows, cols); duplicates collapse to one."""
  m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(num_rows, num_cols))
  m.sum_duplicates()
  m.data[:] = 1.0
  return m
