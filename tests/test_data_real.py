"""Readers on the real benchmark data (../shared/data, or $RECSYS_DATA_DIR): the README's counts.

Skipped when the data is absent; each dataset is loaded once (about 5 s for all of them).
"""

import os

import numpy as np
import pytest

from recsys_core import readers, splits

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

# name: (users, items, interactions, {text field: items with a value}) as in the data README.
COUNTS = {
    "ml-100k": (943, 1682, 100_000, {"title": 1682, "year": 1682, "genres": 1682}),
    "ml-1m": (6040, 3706, 1_000_209, {"title": 3706, "year": 3706, "genres": 3706}),
    "lastfm": (1362, 2975, 64_286, {"title": 2975}),
    "amazon_beauty": (22_363, 12_101, 198_502, {"title": 12_101, "brand": 10_000,
                                                "categories": 12_101}),
    "amazon_toys": (19_412, 11_924, 167_597, {"title": 11_924, "categories": 11_924}),
    "amazon_sports": (35_598, 18_357, 296_337, {}),
    "amazon_video": (31_013, 23_715, 287_107, {}),
    "gowalla_weak": (29_858, 40_981, 810_128 + 217_242, {}),
    "gowalla_strong": (23_858 + 3000 + 3000, 40_981, 1_027_370, {}),
}


@pytest.fixture(scope="module")
def load(data_dir):
  cache = {}

  def get(name):
    if not os.path.isdir(os.path.join(data_dir, name)):
      pytest.skip(f"{name} not in {data_dir}")
    if name not in cache:
      cache[name] = readers.load_dataset(name, data_dir)
    return cache[name]
  return get


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_real_dataset_counts(load, name):
  ds = load(name)
  users, items, interactions, text = COUNTS[name]
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (users, items, interactions)
  assert ds.name == name and len(ds.indptr) == users + 1 and ds.indptr[-1] == interactions
  assert ds.items.min() == 0 and ds.items.max() == items - 1
  for field, count in text.items():
    assert sum(v is not None for v in ds.item_text[field]) == count, field
  if ds.timestamps is not None:
    for u in range(0, ds.num_users, 97):  # chronological within users
      assert np.all(np.diff(ds.timestamps[ds.indptr[u]:ds.indptr[u + 1]]) >= 0)


def test_movielens_text_and_ratings(load):
  ml100k = load("ml-100k")
  assert (ml100k.item_text["title"][0], ml100k.item_text["year"][0]) == ("Toy Story", "1995")
  assert ml100k.ratings.min() == 1 and ml100k.ratings.max() == 5
  ml1m = load("ml-1m")
  i = list(ml1m.item_ids).index("73")
  assert ml1m.item_text["title"][i] == "Misérables, Les" and ml1m.item_text["year"][i] == "1995"
  assert ml1m.item_text["genres"][0] == "Animation, Children's, Comedy"


def test_amazon_beauty_leave_one_out(load):
  ds = load("amazon_beauty")
  split = splits.leave_one_out(ds)  # a 5-core: every user has a validation and a test item
  assert split.valid.target.nnz == split.test.target.nnz == 22_363
  assert split.train.nnz == 198_502 - 2 * 22_363


def test_gowalla_strong_presplit(data_dir):
  if not os.path.isdir(os.path.join(data_dir, "gowalla_strong")):
    pytest.skip("gowalla_strong absent")
  ds, split = readers.load_presplit("gowalla_strong", data_dir)
  assert split.train.shape == (23_858, 40_981) and split.train.nnz == 821_316
  assert split.valid.num_users == split.test.num_users == 3000
  assert (split.valid.fold_in.nnz, split.valid.target.nnz) == (82_635, 19_230)
  assert (split.test.fold_in.nnz, split.test.target.nnz) == (84_460, 19_729)
  assert split.test.fold_in.multiply(split.test.target).nnz == 0
  assert ds.user_ids[23_858] == "valid:0" and ds.user_ids[-1] == "test:2999"


def test_gowalla_weak_presplit(data_dir):
  if not os.path.isdir(os.path.join(data_dir, "gowalla_weak")):
    pytest.skip("gowalla_weak absent")
  ds, split = readers.load_presplit("gowalla_weak", data_dir)
  assert split.train.shape == (29_858, 40_981) and split.train.nnz == 810_128
  assert split.test.target.nnz == 217_242 and split.valid is None
  assert list(ds.item_ids[:3]) == ["0", "1", "2"]  # LightGCN ids map to themselves
