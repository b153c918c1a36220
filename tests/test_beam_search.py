"""gram_jax.trie and gram_jax.beam_search: valid, distinct, sorted items; exact against exhaustive
teacher-forced scoring of every item; zero mass on tokens outside the trie."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gram_jax import beam_search
from gram_jax import loss
from gram_jax import t5
from gram_jax import trie as trie_lib

VOCAB = 50


def _item_ids(num_items: int, seed: int) -> list:
  """Distinct random IDs of 1-4 tokens with shared prefixes, some of them prefixes of others (as
  with collision suffixes): the IDs have different lengths."""
  rng = np.random.default_rng(seed)
  ids = set()
  while len(ids) < num_items:
    head = tuple(rng.integers(2, 6, size=rng.integers(1, 3)))  # few heads: shared prefixes
    ids.add(head + tuple(rng.integers(2, VOCAB - 1, size=rng.integers(0, 3))))
  return sorted(ids)


@pytest.fixture(scope="module")
def setup():
  # tests/test_t5.py's model (one compiled init when both files run in one process)
  config = t5.t5_config("tiny", vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                        num_layers=1, num_prompt_positions=4)
  model = t5.T5(config)
  params = t5.init_params(model, 0)
  rng = np.random.default_rng(1)
  input_ids = rng.integers(2, VOCAB - 1, size=(3, 3, 6)).astype(np.int32)
  input_ids[0, 2] = 0  # a fully padded prompt
  input_ids[1, :, 4:] = 0
  return model, params, input_ids


def _exhaustive(model, params, input_ids, trie):
  """[users, items] teacher-forced log-probability of every item's full ID + EOS."""
  users, items = input_ids.shape[0], trie.num_items
  repeated = np.repeat(input_ids, items, axis=0)
  labels = np.tile(trie.sequences, (users, 1))
  return np.asarray(_score(model)(params, repeated, labels)).reshape(users, items)


@functools.lru_cache
def _score(model):
  return jax.jit(functools.partial(loss.sequence_log_probs, model))


def _check_valid_distinct_sorted(items, scores, num_items):
  for row, score in zip(items, scores):
    real = row[row >= 0]
    assert np.all(real < num_items)
    assert len(set(real.tolist())) == len(real)
    assert np.all(row[len(real):] == -1) and np.all(np.isneginf(score[len(real):]))
    assert np.all(np.diff(score[:len(real)]) <= 0)


def test_trie_structure_and_bad_ids():
  trie = trie_lib.build_trie([[5, 7], [5, 7, 9], [6], [5, 8, 2]], vocab_size=10)
  assert trie.max_len == 4 and trie.max_degree == 2 and trie.num_items == 4
  np.testing.assert_array_equal(trie.sequences[1], [5, 7, 9, 1])
  np.testing.assert_array_equal(trie.lengths, [3, 4, 2, 4])
  assert trie.allowed_tokens([]) == [5, 6]
  assert trie.allowed_tokens([5, 7]) == [1, 9]  # an ID ends here and a longer one continues
  assert trie.allowed_tokens([5, 9]) == [] and trie.allowed_tokens([6, 1]) == []
  assert sorted(trie.item[trie.item >= 0].tolist()) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match=r"items \[0, 2\] have the same ID \[3, 4\]"):
    trie_lib.build_trie([[3, 4], [3], [3, 4]])
  with pytest.raises(ValueError, match="item 1 has token 1 at position 0"):
    trie_lib.build_trie([[3, 4], [1, 3]])
  with pytest.raises(ValueError, match="item 0 has token 12"):
    trie_lib.build_trie([[3, 12]], vocab_size=10)
  with pytest.raises(ValueError, match="item 1 has an empty ID"):
    trie_lib.build_trie([[3], []])


def test_trie_outside_the_vocabulary_is_refused(setup):
  model, params, input_ids = setup
  trie = trie_lib.build_trie([[5], [VOCAB + 3]]).device()
  with pytest.raises(ValueError, match=f"token {VOCAB + 3}, outside the model's vocabulary"):
    beam_search.constrained_beam_search(model, params, trie, input_ids, num_beams=2)


def test_expand_gives_invalid_tokens_zero_mass():
  trie = trie_lib.build_trie([[5, 7], [5, 7, 9], [6]]).device()
  logits = np.zeros((1, 2, 12), np.float32)
  logits[..., 11] = 20.0  # nearly all mass on a token the trie never allows
  states = jnp.zeros((1, 2), jnp.int32)
  scores = jnp.array([[0.0, -jnp.inf]])
  edges, cand = beam_search.expand(trie, states, scores, jnp.asarray(logits))
  edges, cand = np.asarray(edges), np.asarray(cand)
  finite = np.isfinite(cand[0])
  assert sorted(np.asarray(trie.token)[edges[0, finite]].tolist()) == [5, 6]
  expected = np.asarray(jax.nn.log_softmax(logits[0, 0]))[5]
  np.testing.assert_allclose(cand[0, finite], expected, rtol=1e-6)
  assert np.exp(cand[0, finite]).sum() < 1e-7  # the mass the constraint removes is not renormalised


def test_beam_search_equals_exhaustive_ranking_when_beams_cover_all_items(setup):
  model, params, input_ids = setup
  ids = _item_ids(30, 0)
  assert set(map(len, ids)) == {1, 2, 3, 4}
  assert any(a != b and b[:len(a)] == a for a in ids for b in ids)  # an ID ends where one goes on
  trie = trie_lib.build_trie(ids, vocab_size=VOCAB)
  items, scores = beam_search.constrained_beam_search(model, params, trie.device(), input_ids,
                                                     num_beams=32)
  items, scores = np.asarray(items), np.asarray(scores)
  exhaustive = _exhaustive(model, params, input_ids, trie)
  _check_valid_distinct_sorted(items, scores, trie.num_items)
  for user in range(len(items)):
    assert sorted(items[user, :30].tolist()) == list(range(30))
    np.testing.assert_array_equal(items[user, 30:], -1)
    assert np.all(np.isneginf(scores[user, 30:]))
    np.testing.assert_allclose(scores[user, :30], exhaustive[user, items[user, :30]], atol=2e-5)
    np.testing.assert_array_equal(items[user, :30], np.argsort(-exhaustive[user], kind="stable"))


def test_narrow_beam_returns_valid_items_with_their_exact_scores(setup):
  model, params, input_ids = setup
  trie = trie_lib.build_trie(_item_ids(30, 0), vocab_size=VOCAB)
  items, scores = (np.asarray(a) for a in beam_search.constrained_beam_search(
      model, params, trie.device(), input_ids, num_beams=8))
  exhaustive = _exhaustive(model, params, input_ids, trie)
  _check_valid_distinct_sorted(items, scores, trie.num_items)
  assert np.all(items >= 0)
  for user in range(len(items)):
    np.testing.assert_allclose(scores[user], exhaustive[user, items[user]], atol=2e-5)


def test_length_penalty_ranks_by_normalised_log_probability(setup):
  model, params, input_ids = setup
  trie = trie_lib.build_trie(_item_ids(30, 0), vocab_size=VOCAB)
  items, scores = beam_search.constrained_beam_search(model, params, trie.device(), input_ids,
                                                     num_beams=30, length_penalty=1.0)
  normalised = _exhaustive(model, params, input_ids, trie) / trie.lengths[None]
  for user in range(len(items)):
    np.testing.assert_allclose(np.asarray(scores[user]), np.sort(normalised[user])[::-1],
                               atol=2e-5)
