"""Interaction filters: pure functions Dataset -> Dataset.

Each keeps a subset of the interactions (order preserved, so sequences stay chronological), then
drops users and items left without interactions and re-indexes both densely in their previous
relative order; raw-id maps, timestamps, ratings and item_text stay aligned.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recsys_core.dataset import DataError, Dataset


def select_interactions(ds: Dataset, keep: np.ndarray) -> Dataset:
  """The Dataset of the interactions where `keep` ([num_interactions] bool) is True."""
  keep = np.asarray(keep, bool)
  users = ds.user_of_interaction()[keep]
  items = ds.items[keep]
  kept_users = np.flatnonzero(np.bincount(users, minlength=ds.num_users))
  kept_items = np.flatnonzero(np.bincount(items, minlength=ds.num_items))
  new_item = np.full(ds.num_items, -1, np.int32)
  new_item[kept_items] = np.arange(len(kept_items), dtype=np.int32)
  counts = np.bincount(users, minlength=ds.num_users)[kept_users]
  return dataclasses.replace(
      ds,
      user_ids=ds.user_ids[kept_users],
      item_ids=ds.item_ids[kept_items],
      indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
      items=new_item[items],
      timestamps=None if ds.timestamps is None else ds.timestamps[keep],
      ratings=None if ds.ratings is None else ds.ratings[keep],
      item_text={f: [v[i] for i in kept_items] for f, v in ds.item_text.items()})


def filter_rating(ds: Dataset, min_rating: float) -> Dataset:
  """Keep interactions with rating >= `min_rating` (e.g. 4 for "positive" MovieLens feedback)."""
  if ds.ratings is None:
    raise DataError(f"{ds.name}: has no ratings; drop the rating filter (min_rating) for it")
  keep = ds.ratings >= min_rating
  if not keep.any():
    seen = (f"its ratings range from {ds.ratings.min():g} to {ds.ratings.max():g}"
            if ds.num_interactions else "it has no interaction")
    raise DataError(f"{ds.name}: no interaction of {ds.source or ds.name} passes "
                    f"min_rating={min_rating:g} ({seen}); lower config.min_rating")
  return select_interactions(ds, keep)


def k_core(ds: Dataset, min_user: int, min_item: int) -> Dataset:
  """Largest subset where every user has >= min_user and every item >= min_item interactions.

  Counts interactions, repeats included (apply `drop_repeats` first to count distinct pairs);
  removal is iterated until stable, since dropping an item can push a user below the bound.
  """
  users = ds.user_of_interaction()
  keep = np.ones(ds.num_interactions, bool)
  while True:
    user_count = np.bincount(users[keep], minlength=ds.num_users)
    item_count = np.bincount(ds.items[keep], minlength=ds.num_items)
    new = keep & (user_count[users] >= min_user) & (item_count[ds.items] >= min_item)
    if new.sum() == keep.sum():
      if not keep.any():
        raise DataError(f"{ds.name}: no user of {ds.source or ds.name} is left by the k-core "
                        f"filter (min_user={min_user}, min_item={min_item}; {ds.num_users} users "
                        "before it); lower config.min_user_interactions")
      return select_interactions(ds, keep)
    keep = new


def drop_repeats(ds: Dataset) -> Dataset:
  """Keep the first (chronological) occurrence of each (user, item) pair."""
  key = ds.user_of_interaction().astype(np.int64) * ds.num_items + ds.items
  _, first = np.unique(key, return_index=True)
  keep = np.zeros(ds.num_interactions, bool)
  keep[first] = True
  return select_interactions(ds, keep)
