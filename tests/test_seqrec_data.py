"""seqrec/data.py (RecBole's training examples, resumable batches) and the evaluation masking."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from recsys_core import metrics as metrics_lib
from recsys_core.dataset import Dataset
from recsys_core.errors import ConfigError
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


def test_last_training_prefix_only_is_one_example_per_user():
  examples = data.train_examples(DS, max_len=3, prefixes="last")
  batch = examples.batch(np.arange(len(examples)))
  # The official ACE runs (--aug=False): user 0's last training target is item 4 (input 1, 2, 3).
  np.testing.assert_array_equal(batch["targets"], [5, 5])
  np.testing.assert_array_equal(batch["inputs"], [[2, 3, 4], [4, 0, 0]])
  every = data.train_examples(DS, max_len=3)
  last_of_each_user = [3, 4]  # the last example of user 0 and of user 2 among all prefixes
  np.testing.assert_array_equal(examples.targets, every.targets[last_of_each_user])
  with pytest.raises(ConfigError, match="config.train_prefixes='first'"):
    data.train_examples(DS, max_len=3, prefixes="first")


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
  weights = np.concatenate([b["weights"] for b in epoch])
  assert weights.sum() == len(examples) and weights[-1] == 0  # last batch padded
  for a, b in zip(epoch[3:], batches.epoch(2, start=3)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = next(iter(data.Batches(examples, batch_size=16, seed=3).epoch(3)))
  assert not np.array_equal(other["targets"], epoch[0]["targets"])


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


def test_trim_padding_keeps_every_item_in_a_power_of_two_width():
  seqs = np.zeros((3, 50), np.int32)
  np.testing.assert_array_equal(data.trim_padding(seqs), seqs[:, :8])  # all empty: the minimum
  seqs[1, :9] = 5
  np.testing.assert_array_equal(data.trim_padding(seqs), seqs[:, :16])
  seqs[2, :33] = 7
  np.testing.assert_array_equal(data.trim_padding(seqs), seqs)  # 64 > max_len: the full width
  assert data.trim_padding(seqs[:, :4]).shape == (3, 4)


def test_length_sorted_trimmed_evaluation_equals_full_width_in_user_order(tmp_path):
  rng = np.random.default_rng(0)
  ds = _dataset([rng.integers(0, 40, size=n) for n in rng.integers(3, 70, size=60)], num_items=40)
  config = type("Config", (), dict(max_len=50, ks=(1, 5, 10), recall_normalization="size",
                                   eval_batch_size=16, progress=False))()
  model = run.sasrec.SASRec(num_items=40, max_len=50, hidden=16, inner=32, num_layers=2,
                            num_heads=2)
  params = run.sasrec.init_params(model, 0)
  score_fn = run.make_score_fn(model)
  for which in ("valid", "test"):
    eval_set = run.eval_sets(ds, False)[which]
    evaluator = run.Evaluator(config, score_fn, ds, which, eval_set,
                              per_user_path=str(tmp_path / f"{which}.npz"))
    assert not np.array_equal(evaluator.order, np.arange(60))  # the users really were reordered
    means = evaluator(params)
    full = metrics_lib.evaluate_per_user(
        score_fn, params, eval_set, config.ks, normalization="size", batch_size=16,
        progress=False, batch_inputs=lambda start, stop: data.eval_histories(ds, 50, which)[start:stop])
    per_user = np.load(tmp_path / f"{which}.npz")
    for name, values in full.items():
      np.testing.assert_array_equal(per_user[name], values, err_msg=name)
      assert means[f"{which}/{name}"] == pytest.approx(np.nanmean(values), rel=1e-12)


def _windows(batch: dict) -> list:
  """Sorted (input ids, target) of the real examples of a batch, packed or one per row."""
  if "segments" not in batch:
    return sorted((tuple(int(i) for i in row if i), int(target))
                  for row, target, weight in zip(batch["inputs"], batch["targets"],
                                                 batch["weights"]) if weight)
  inputs, segments = batch["inputs"].ravel(), batch["segments"].ravel()
  return sorted((tuple(int(i) for i in inputs[segments == k + 1]), int(target))
                for k, (target, weight) in enumerate(zip(batch["targets"], batch["weights"]))
                if weight)


def test_packed_batches_hold_the_unpacked_windows_in_the_fewest_rows():
  ds = _dataset([np.arange(i % 9, i % 9 + 3 + i % 11) for i in range(40)], num_items=25)
  examples = data.train_examples(ds, max_len=8)
  plain = data.Batches(examples, batch_size=32, seed=1)
  packed = data.Batches(examples, batch_size=32, seed=1, pack_multiple=2)
  rows = packed.rows_per_batch(0)
  for a, b, r in zip(plain.epoch(0), packed.epoch(0), rows):
    assert _windows(a) == _windows(b)
    np.testing.assert_array_equal(a["targets"], b["targets"])
    np.testing.assert_array_equal(a["weights"], b["weights"])
    assert b["inputs"].shape == b["segments"].shape == b["positions"].shape == (r, 8)
    k = b["segments"].ravel()[b["last"]] - 1                     # each window's last item
    np.testing.assert_array_equal(k, np.arange(32))
    lengths = (a["inputs"] > 0).sum(1)
    np.testing.assert_array_equal(b["positions"].ravel()[b["last"]], lengths - 1)
    np.testing.assert_array_equal(b["inputs"].ravel()[b["last"]],
                                  a["inputs"][np.arange(32), lengths - 1])
    # windows are contiguous, numbered from position 0, and the rows are as few as a multiple of
    # 2 allows: one row fewer would not hold the longest-first placement
    for segment in range(1, 33):
      where = np.flatnonzero(b["segments"].ravel() == segment)
      np.testing.assert_array_equal(np.diff(where), 1)
      np.testing.assert_array_equal(b["positions"].ravel()[where], np.arange(len(where)))
    assert r % 2 == 0 and data.first_fit_decreasing(lengths, r - 2, 8) is None
  assert rows.max() < 32 and len(set(rows)) > 1


def test_first_fit_decreasing_places_longest_first_without_overlap():
  lengths = np.array([3, 8, 5, 2, 4, 2])
  row, offset = data.first_fit_decreasing(lengths, 3, 8)
  # 8 -> row 0; 5 -> row 1 at 0; 4 -> row 2 at 0; 3 -> row 1 at 5; 2 -> row 2 at 4; 2 -> row 2 at 6
  np.testing.assert_array_equal(row, [1, 0, 1, 2, 2, 2])
  np.testing.assert_array_equal(offset, [5, 0, 0, 4, 0, 6])
  assert data.first_fit_decreasing(lengths, 2, 8) is None
  assert data.pack_layout(lengths, 8, 2)[0] == 4 and data.pack_layout(lengths, 8, 1)[0] == 3


def test_pack_multiple_is_checked():
  examples = data.train_examples(DS, max_len=3)
  with pytest.raises(ValueError, match=r"config.pack_multiple=-1"):
    data.Batches(examples, 4, 0, pack_multiple=-1)
  assert list(data.Batches(examples, 4, 0).rows_per_batch()) == [4, 4]
