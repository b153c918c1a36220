"""SASRec inputs on the real Amazon Beauty data (skips when ../shared/data is absent)."""

import numpy as np

from recsys_core import readers
from seqrec import data
from seqrec import run
import pytest

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow


def test_beauty_examples_and_eval_sets_follow_recbole(data_dir):
  ds = readers.load_dataset("amazon_beauty", data_dir)
  assert (ds.num_users, ds.num_items, ds.num_interactions) == (22363, 12101, 198502)
  n = np.diff(ds.indptr)
  examples = data.train_examples(ds, max_len=50)
  # RecBole: n - 1 prefixes per user, the last two are the valid and test examples.
  assert len(examples) == int((n - 3).sum()) == 131413
  # The official ACE runs' protocol: one example per user (every Beauty user has >= 5 items).
  last = data.train_examples(ds, max_len=50, prefixes="last")
  assert len(last) == ds.num_users
  np.testing.assert_array_equal(last.targets, ds.indptr[1:] - 3)
  longest = int(np.argmax(n))  # 204 items: inputs are the last 50 before the target
  test = data.eval_histories(ds, 50, "test")[longest]
  np.testing.assert_array_equal(test, ds.sequence(longest)[-51:-1] + 1)
  sets = run.eval_sets(ds, mask_history=False)
  assert sets["test"].fold_in.nnz == 0 and sets["test"].target.nnz == ds.num_users
  np.testing.assert_array_equal(sets["test"].target.indices, [ds.sequence(u)[-1] for u in
                                                              range(ds.num_users)])
