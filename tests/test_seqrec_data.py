"""seqrec/data.py (RecBole's training examples, resumable batches) and the evaluation masking."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from core.dataset import Dataset
from seqrec import data
from seqrec import run


def _dataset(sequences, num_items):
  lengths = [len(s) for s in sequences]
  return Dataset(name="toy", user_ids=np.array([str(u) for u in range(len(sequences))]),
                 item_ids=np.array([str(i) for i in range(num_items)]),
                 indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                 items=np.concatenate(sequences).astype(np.int32))


# user 0: 7 items (train 5 -> 4 examples); user 1: 3 items (train 1 -> 0 examples); user 2: 2 items
DS = _dataset([[0, 1, 2, 3, 4, 5, 6], [7, 8, 9], [3, 4]], num_items=10)


def test_training_examples_are_every_prefix_of_the_training_part():
  examples = data.train_examples(DS, max_len=3)
  batch = examples.batch(np.arange(len(examples)))
  # user 2 has < 3 items: all of them train (RecBole would give it one example too).
  np.testing.assert_array_equal(batch["targets"], [2, 3, 4, 5, 5])
  np.testing.assert_array_equal(batch["inputs"], [[1, 0, 0], [1, 2, 0], [1, 2, 3], [2, 3, 4],
                                                  [4, 0, 0]])


def test_eval_histories_valid_and_test():
  np.testing.assert_array_equal(data.eval_histories(DS, 3, "valid"),
                                [[3, 4, 5], [8, 0, 0], [4, 5, 0]])
  np.testing.assert_array_equal(data.eval_histories(DS, 3, "test"),
                                [[4, 5, 6], [8, 9, 0], [4, 5, 0]])


def test_batches_are_seeded_complete_and_resumable():
  ds = _dataset([np.arange(i % 7, i % 7 + 9) for i in range(30)], num_items=20)
  examples = data.train_examples(ds, max_len=4)
  batches = data.Batches(examples, batch_size=16, seed=3)
  epoch = list(batches.epoch(2))
  assert len(epoch) == batches.num_batches == -(-len(examples) // 16)
  weights = np.concatenate([b["weights"] for (b,) in epoch])
  assert weights.sum() == len(examples) and weights[-1] == 0  # last batch padded
  for (a,), (b,) in zip(epoch[3:], batches.epoch(2, start=3)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  (other,) = next(iter(data.Batches(examples, batch_size=16, seed=3).epoch(3)))
  assert not np.array_equal(other["targets"], epoch[0][0]["targets"])


def _ranked_by_id_evaluator(ds, mask_history, which):
  """An Evaluator whose model ranks item 0 first, then 1, 2, ... (scores = -id)."""
  config = type("Config", (), dict(max_len=5, ks=(1, 3, 4, 5), recall_normalization="size",
                                   eval_batch_size=8, progress=False))()
  score_fn = lambda params, fold_in, seq: jnp.broadcast_to(
      -jnp.arange(ds.num_items, dtype=jnp.float32), (seq.shape[0], ds.num_items))
  return run.Evaluator(config, score_fn, ds, which, run.eval_sets(ds, mask_history)[which])


def test_evaluation_masks_nothing_by_default_like_recbole_and_history_on_request():
  ds = _dataset([[0, 1, 2, 3], [5, 0, 4, 6]], num_items=7)
  # valid targets: user 0 -> 2 (history {0, 1}); user 1 -> 4 (history {5, 0}).
  plain = _ranked_by_id_evaluator(ds, False, "valid")(None)
  # unmasked: 2 ranks 3rd, 4 ranks 5th; masked: 2 ranks 1st, 4 ranks 4th (0 and 5 removed).
  assert [plain[f"valid/recall@{k}"] for k in (1, 3, 4, 5)] == [0.0, 0.5, 0.5, 1.0]
  masked = _ranked_by_id_evaluator(ds, True, "valid")(None)
  assert [masked[f"valid/recall@{k}"] for k in (1, 3, 4, 5)] == [0.5, 0.5, 1.0, 1.0]
  # test: user 1 predicts 6 from history {5, 0, 4}, which masking excludes.
  test_sets = run.eval_sets(ds, True)["test"]
  np.testing.assert_array_equal(test_sets.fold_in.toarray()[1], [1, 0, 0, 0, 1, 1, 0])
  assert run.eval_sets(ds, False)["test"].fold_in.nnz == 0


def test_score_fn_drops_the_padding_column():
  ds = _dataset([[0, 1, 2, 3]], num_items=4)
  config = type("C", (), dict(max_len=5))()
  model = run.sasrec.SASRec(num_items=4, max_len=5, hidden=4, inner=8, num_layers=1, num_heads=1)
  params = run.sasrec.init_params(model, 0)
  evaluator = run.Evaluator(config, run.make_score_fn(model), ds, "test",
                            run.eval_sets(ds, False)["test"])
  seq = jnp.asarray(evaluator.histories)
  full = model.apply({"params": params}, seq, method=run.sasrec.SASRec.scores)
  scores = evaluator.score_fn(params, None, seq)
  assert scores.shape == (1, 4)
  np.testing.assert_array_equal(scores, full[:, 1:])
  assert isinstance(run.eval_sets(ds, False)["valid"].fold_in, sp.csr_matrix)


def _rows(batch: tuple) -> tuple:
  """(sorted (input ids without padding, target) of the real rows, number of rows) of a batch."""
  real = sorted((tuple(int(i) for i in row if i), int(target))
                for tier in batch
                for row, target, weight in zip(tier["inputs"], tier["targets"], tier["weights"])
                if weight)
  return real, sum(len(tier["weights"]) for tier in batch)


def test_length_tiers_hold_the_untiered_batches_rows_within_their_widths():
  ds = _dataset([np.arange(i % 9, i % 9 + 3 + i % 11) for i in range(40)], num_items=25)
  examples = data.train_examples(ds, max_len=8)
  plain = list(data.Batches(examples, batch_size=32, seed=1).epoch(0))
  tiers = ((2, 10), (4, 10), (8, 12))
  tiered = data.Batches(examples, batch_size=32, seed=1, tiers=tiers)
  assert tiered.tiered_fraction(0) == 5 / 6
  shapes = set()
  for a, b in zip(plain, tiered.epoch(0)):
    assert len(a) == 1 and _rows(a) == _rows(b)
    shapes.add(tuple(t["inputs"].shape for t in b))
    if len(b) == 3:  # shortest rows first, each within its tier's width
      lengths = [(t["inputs"] > 0).sum(1)[t["weights"] > 0] for t in b]
      assert [t["inputs"].shape for t in b] == [(10, 2), (10, 4), (12, 8)]
      assert lengths[0].max() <= lengths[1].min() and lengths[1].max() <= lengths[2].min()
  # batches whose rows do not fit run untiered, so both shapes occur on this data
  assert shapes == {((10, 2), (10, 4), (12, 8)), ((32, 8),)}


def test_length_tiers_are_checked_against_batch_size_and_max_len():
  examples = data.train_examples(DS, max_len=3)
  assert data.Batches(examples, 4, 0).tiers == ((3, 4),)
  for tiers, message in [(((2, 2), (3, 1)), "sum to batch_size=4"),
                         (((2, 0), (3, 4)), "rows must be >= 1"),
                         (((2, 2), (4, 2)), "end at max_len"),
                         (((3, 2), (2, 2)), "increase")]:
    with pytest.raises(ValueError, match=rf"config.length_tiers=.*{message}"):
      data.Batches(examples, 4, 0, tiers)
