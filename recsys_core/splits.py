"""Split builders: Dataset -> Split for the three protocols (strong, weak, leave-one-out).

All randomness comes from `np.random.default_rng(seed)`, so a split is a pure function of
(dataset, arguments, seed). Matrices are binary: repeated (user, item) interactions collapse, and
random splits work on each user's distinct items (first occurrence). Every builder raises
`DataError("empty split ...")` when an evaluation set would have no user with a target.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp

from recsys_core.dataset import DataError, Dataset, EvalSet, Split, binary_matrix
from recsys_core.errors import ConfigError


def _distinct_pairs(ds: Dataset, users: Optional[np.ndarray] = None):
  """(users, items) [n] int64 of each user's distinct items in first-occurrence order,
  restricted to the dense user ids `users` if given."""
  u = ds.user_of_interaction().astype(np.int64)
  i = ds.items.astype(np.int64)
  if users is not None:
    mask = np.isin(u, users)
    u, i = u[mask], i[mask]
  _, first = np.unique(u * ds.num_items + i, return_index=True)
  first.sort()
  return u[first], i[first]


def _random_rank(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
  """[n] int64 rank of each entry within its row under a uniformly random order of the row."""
  order = np.lexsort((rng.random(len(rows)), rows))
  starts = np.searchsorted(rows[order], rows[order], side="left")
  rank = np.empty(len(rows), np.int64)
  rank[order] = np.arange(len(rows)) - starts
  return rank


def _check_nonempty(evalset: EvalSet, what: str, why: str) -> EvalSet:
  if evalset.target.nnz == 0:
    raise DataError(f"empty split: no {what} user has a target item ({why})")
  return evalset


# --- strong generalisation ---------------------------------------------------------------------

def _partition(ds: Dataset, num_heldout_users: int, rng: np.random.Generator):
  n = num_heldout_users
  if n < 1:
    raise ConfigError(f"num_heldout_users={n}: hold out at least 1 user (config.heldout_users)")
  source = ds.source or ds.name
  if ds.num_users < 3:
    raise DataError(f"{ds.name}: {ds.num_users} users left after filtering {source}; a strong split "
                    "needs at least 3 (train, valid, test)")
  if 2 * n >= ds.num_users:
    raise DataError(f"{ds.name}: {ds.num_users} users (after filtering {source}) "
                    f"cannot give num_heldout_users={n} to each of valid and test and keep training "
                    f"users; lower config.heldout_users below {(ds.num_users + 1) // 2}")
  perm = rng.permutation(ds.num_users)
  train_users, valid_users, test_users = (np.sort(perm[:-2 * n]), np.sort(perm[-2 * n:-n]),
                                          np.sort(perm[-n:]))
  items = np.unique(ds.items[np.isin(ds.user_of_interaction(), train_users)])
  return train_users, valid_users, test_users, items


def strong_partition(ds: Dataset, num_heldout_users: int, seed: int):
  """The users and items of `strong_split(ds, num_heldout_users, seed)`.

  Returns:
    train_users, valid_users, test_users: sorted int64 dense user ids; row r of Split.train /
      Split.valid / Split.test is user train_users[r] / valid_users[r] / test_users[r].
    items: sorted dense ids of the training users' items; Split column j is item items[j].
  """
  return _partition(ds, num_heldout_users, np.random.default_rng(seed))


def _fold_in_target(ds, users, column, num_columns, rng, target_fraction, min_items) -> EvalSet:
  """Each user's distinct training-set items, a random `target_fraction` of them the target."""
  u, i = _distinct_pairs(ds, users)
  i = column[i]
  u, i = u[i >= 0], i[i >= 0]
  rows = np.searchsorted(users, u)
  n = np.bincount(rows, minlength=len(users))
  # int(): VAE-CF's size (rounded down); users below min_items keep everything as fold-in.
  size = np.where(n >= min_items, (target_fraction * n).astype(np.int64), 0)
  is_target = _random_rank(rng, rows) < size[rows]
  shape = (len(users), num_columns)
  return EvalSet(fold_in=binary_matrix(rows[~is_target], i[~is_target], *shape),
                 target=binary_matrix(rows[is_target], i[is_target], *shape))


def strong_split(ds: Dataset, num_heldout_users: int, seed: int = 0,
                 fold_in_fraction: float = 0.8, min_items: int = 5) -> Split:
  """Strong generalisation as in VAE-CF's preprocessing (Liang et al. 2018).

  Users are permuted with the seed: the last `num_heldout_users` go to test, the previous
  `num_heldout_users` to valid, the rest to train. Columns are the items of training users
  (others are dropped from the held-out users). Of each held-out user's items, if the user has
  >= `min_items`, int((1 - fold_in_fraction) * n) random ones are the target and the rest the
  fold-in; smaller users are all fold-in (empty target, skipped by metrics). Held-out users are
  rows in sorted user-id order, also those left with no item (see `strong_partition`).
  """
  rng = np.random.default_rng(seed)
  train_users, valid_users, test_users, items = _partition(ds, num_heldout_users, rng)
  column = np.full(ds.num_items, -1, np.int64)
  column[items] = np.arange(len(items))
  u, i = _distinct_pairs(ds, train_users)
  train = binary_matrix(np.searchsorted(train_users, u), column[i], len(train_users), len(items))
  # 1 - 0.8 is 0.19999999999999996 in floats, which would floor 0.2 * 5 to 0 instead of 1.
  target_fraction = round(1.0 - fold_in_fraction, 12)
  why = (f"{ds.source or ds.name}: {num_heldout_users} held-out users, none with min_items="
         f"{min_items} items")
  args = (column, len(items), rng, target_fraction, min_items)
  valid = _fold_in_target(ds, valid_users, *args)
  test = _fold_in_target(ds, test_users, *args)
  return Split(train=train, valid=_check_nonempty(valid, "valid", why),
               test=_check_nonempty(test, "test", why), protocol="strong")


# --- weak generalisation -----------------------------------------------------------------------

def _part_size(n: np.ndarray, fraction: float) -> np.ndarray:
  """round(fraction * n), at least 1 and at most n - 1 (0 where n < 2 or fraction == 0)."""
  size = np.clip(np.floor(fraction * n + 0.5).astype(np.int64), 1, np.maximum(n - 1, 1))
  return np.where((n >= 2) & (fraction > 0), size, 0)


def weak_split(ds: Dataset, seed: int = 0, test_fraction: float = 0.2,
               valid_fraction: float = 0.1) -> Split:
  """Weak generalisation: a random part of every user's distinct items is held out.

  Per user with >= 2 items, round(test_fraction * n) (at least 1, at most n - 1) random items are
  the test target, the rest `train`; test = EvalSet(fold_in=train, target=test items). Then
  round(valid_fraction * |train|) of the train items (same bounds) form the validation target:
  valid = EvalSet(fold_in=valid_train, target=valid items), valid_train = train minus them.
  valid_fraction=0 gives valid=None. Rows are all users of `ds`.
  """
  rng = np.random.default_rng(seed)
  u, i = _distinct_pairs(ds)
  n = np.bincount(u, minlength=ds.num_users)
  n_test = _part_size(n, test_fraction)
  n_valid = _part_size(n - n_test, valid_fraction)
  rank = _random_rank(rng, u)
  is_test = rank < n_test[u]
  is_valid = ~is_test & (rank < (n_test + n_valid)[u])
  shape = (ds.num_users, ds.num_items)
  train = binary_matrix(u[~is_test], i[~is_test], *shape)
  why = f"every user of {ds.source or ds.name} has fewer than 2 distinct items"
  test = EvalSet(fold_in=train, target=binary_matrix(u[is_test], i[is_test], *shape))
  test = _check_nonempty(test, "test", why)
  if valid_fraction <= 0:
    return Split(train=train, test=test, protocol="weak")
  rest = ~is_test & ~is_valid
  valid_train = binary_matrix(u[rest], i[rest], *shape)
  valid = EvalSet(fold_in=valid_train, target=binary_matrix(u[is_valid], i[is_valid], *shape))
  why = (f"no user of {ds.source or ds.name} has 2 training items; valid_fraction=0 skips "
         "validation")
  return Split(train=train, test=test, valid=_check_nonempty(valid, "valid", why),
               valid_train=valid_train, protocol="weak")


# --- leave-one-out -----------------------------------------------------------------------------

def leave_one_out_train_lengths(ds: Dataset) -> np.ndarray:
  """[num_users] int64 t_u: length of each user's training prefix under leave-one-out.

  With seq = ds.sequence(u) and len(seq) >= 3, t_u = len(seq) - 2: train on seq[:t_u]; validate
  by predicting seq[t_u] from seq[:t_u]; test by predicting seq[t_u + 1] from seq[:t_u + 1].
  Users with < 3 interactions have t_u = len(seq) (no targets).
  """
  n = np.diff(ds.indptr)
  return np.where(n >= 3, n - 2, n)


def _minus(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
  """Binary a AND NOT b."""
  m = (a - a.multiply(b)).tocsr()
  m.eliminate_zeros()
  return m


def leave_one_out(ds: Dataset) -> Split:
  """Leave-one-out on each user's chronological sequence (SASRec / P5 / GRAM protocol).

  Last interaction = test target, second-to-last = valid target, the rest = train (rows for all
  users; users with < 3 interactions have everything in train and empty targets).
  valid = EvalSet(fold_in=train, target=second-to-last); test = EvalSet(fold_in=train + second-to-
  last, target=last). A target item that also occurs earlier in the sequence is removed from its
  fold-in row, so it stays rankable.
  """
  t = leave_one_out_train_lengths(ds)
  u = ds.user_of_interaction()
  pos = np.arange(ds.num_interactions) - ds.indptr[u]
  shape = (ds.num_users, ds.num_items)
  in_train = pos < t[u]
  is_valid = pos == t[u]  # never true for users with < 3 interactions: t_u = len(seq)
  is_test = pos == t[u] + 1
  train = binary_matrix(u[in_train], ds.items[in_train], *shape)
  valid_target = binary_matrix(u[is_valid], ds.items[is_valid], *shape)
  test_target = binary_matrix(u[is_test], ds.items[is_test], *shape)
  why = f"every user of {ds.source or ds.name} has < 3 interactions"
  valid = EvalSet(fold_in=_minus(train, valid_target), target=valid_target)
  seen = binary_matrix(u[in_train | is_valid], ds.items[in_train | is_valid], *shape)
  test = EvalSet(fold_in=_minus(seen, test_target), target=test_target)
  return Split(train=train, valid=_check_nonempty(valid, "valid", why),
               test=_check_nonempty(test, "test", why), protocol="loo")
