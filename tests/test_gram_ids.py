"""GRAM's semantic-to-lexical IDs: k-means, hierarchy rule, TF-IDF naming, suffixes, ID files."""

import math
import os
import re

import numpy as np
import pytest

from recsys_core.dataset import DataError
from recsys_core.item_text import item_texts
from recsys_core.readers import load_dataset
from recsys_core.synthetic import make_synthetic
from gram_jax import id_files, lexical_ids, prompts
from gram_jax.kmeans import kmeans
from gram_jax.tokenizer import Tokenizer, train_sentencepiece


# --- k-means ------------------------------------------------------------------------------------

def _blobs(rng, centres, per, std):
  x = np.concatenate([c + std * rng.normal(size=(per, len(c))) for c in centres])
  return x.astype(np.float32), np.repeat(np.arange(len(centres)), per)


# Every test clusters 200 points of dimension 8 into 8 clusters with 2 restarts (as the hierarchy
# fixture's root does): one compilation for all.
def test_kmeans_recovers_well_separated_clusters():
  rng = np.random.default_rng(0)
  x, truth = _blobs(rng, 10.0 * np.eye(8), 25, 0.3)
  perm = rng.permutation(len(x))
  result = kmeans(x[perm], 8, key=0, num_restarts=2)
  labels = result.labels[np.argsort(perm)]
  # Each found cluster is exactly one true cluster.
  pairs = set(zip(labels.tolist(), truth.tolist()))
  assert len(pairs) == 8 and len({a for a, _ in pairs}) == 8


def _numpy_inertia(x, labels, centroids):
  x = x.astype(np.float64)
  return float(((x - centroids.astype(np.float64)[labels]) ** 2).sum())


def test_kmeans_objective_matches_numpy_reference():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 8)).astype(np.float32)
  r = kmeans(x, 8, key=3, num_restarts=2)
  assert r.labels.shape == (200,) and r.labels.dtype == np.int32
  assert set(r.labels.tolist()) == set(range(8))
  assert r.inertia == pytest.approx(_numpy_inertia(x, r.labels, r.centroids), rel=1e-5)
  # A converged Lloyd solution is a fixed point of one numpy Lloyd step.
  d = ((x[:, None, :].astype(np.float64) - r.centroids[None].astype(np.float64)) ** 2).sum(-1)
  np.testing.assert_array_equal(d.argmin(1), r.labels)
  means = np.stack([x[r.labels == j].mean(0) for j in range(8)])
  np.testing.assert_allclose(means, r.centroids, atol=1e-5)
  # Same seed, same clustering; bad k refused.
  again = kmeans(x, 8, key=3, num_restarts=2)
  np.testing.assert_array_equal(again.labels, r.labels)
  with pytest.raises(ValueError, match="k <= n"):
    kmeans(x[:3], 6)


def test_kmeans_as_good_as_scikit_learn():
  cluster = pytest.importorskip("sklearn.cluster")
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 8)).astype(np.float32)
  ours = kmeans(x, 8, key=0, num_restarts=2).inertia
  theirs = cluster.KMeans(8, n_init=2, random_state=0, tol=1e-7).fit(x).inertia_
  assert ours <= theirs * 1.02


# --- the hierarchy ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_subset():
  """200 synthetic items: texts, a trained tokenizer, embeddings, cluster paths (c=8, l=3)."""
  ds = make_synthetic()
  texts = item_texts(ds, lowercase=True)[:200]
  tmp = os.path.join(os.environ.get("PYTEST_TMPDIR", "/tmp"), f"gram_ids_test_{os.getpid()}.model")
  tok = train_sentencepiece(prompts.tokenizer_corpus(texts), tmp, vocab_size=600)
  os.unlink(tmp)
  emb = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
  paths = lexical_ids.hierarchical_clusters(emb, 8, 3, seed=0, num_restarts=2)
  return texts, tok, emb, paths


def test_hierarchy_every_item_gets_all_levels_and_small_nodes_split_into_singletons(
    synthetic_subset):
  _, _, _, paths = synthetic_subset
  c, depth = 8, 3
  assert paths.shape == (200, depth) and paths.min() >= 0 and paths.max() < 200
  assert len(np.unique(paths[:, 0])) == c  # the root (200 > c items) is split by k-means
  for level in range(1, depth):
    prefixes, node = np.unique(paths[:, :level], axis=0, return_inverse=True)
    node = node.reshape(-1)
    for g in range(len(prefixes)):
      members = np.flatnonzero(node == g)
      parent_small = level >= 2 and len(np.flatnonzero(
          (paths[:, :level - 1] == paths[members[0], :level - 1]).all(1))) <= c
      if parent_small:  # a singleton continues with child 0
        assert len(members) == 1 and paths[members[0], level] == 0
      elif len(members) <= c:  # children numbered 0.. in item order
        np.testing.assert_array_equal(paths[members, level], np.arange(len(members)))
      else:
        assert paths[members, level].max() < c


def test_hierarchy_is_deterministic_per_seed(synthetic_subset):
  _, _, emb, paths = synthetic_subset
  again = lexical_ids.hierarchical_clusters(emb, 8, 3, seed=0, num_restarts=2)
  np.testing.assert_array_equal(again, paths)


def test_every_item_gets_a_unique_full_id_of_single_tokens(synthetic_subset):
  texts, tok, emb, paths = synthetic_subset
  ids = lexical_ids.build_lexical_ids(emb, texts, tok, 8, 3, paths=paths)
  assert len(ids) == 200 and len(set(ids)) == 200
  for words in ids:
    named = [w for w in words if not w.isdigit()]
    assert len(named) == 3  # one name per level (none ran out here)
    assert len(set(named)) == 3  # a level never repeats a token already in the ID
    assert all(0 <= tok.token_id(w) < tok.base_size for w in named)  # one token each


# --- TF-IDF naming, by hand ---------------------------------------------------------------------

def _word_tokenizer(words):
  pieces = ["<pad>", "</s>", "<unk>"] + list(words)
  index = {w: i for i, w in enumerate(pieces)}
  return Tokenizer(pieces, lambda text: [index.get(w, 2) for w in text.split()], {0, 1, 2},
                   pad_id=0, eos_id=1, unk_id=2)


def test_tfidf_matches_the_bm25_formula():
  docs = [[3, 3, 4, 5], [3, 4], [5, 6, 6, 6, 4]]
  scores = lexical_ids.tfidf_scores(docs, 8, tf_max_len=3).toarray()
  n = len(docs)
  for i, doc in enumerate(docs):
    for t in range(8):
      df = sum(t in d for d in docs)
      idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
      assert scores[i, t] == pytest.approx(doc[:3].count(t) * idf, rel=1e-6)


def test_naming_skips_tokens_already_in_the_id_and_suffixes_collisions():
  tok = _word_tokenizer(["lipstick", "red", "shampoo", "hair", "argan", "keratin", "a"])
  texts = ["shampoo shampoo hair argan a", "shampoo hair keratin a", "lipstick red", "lipstick red"]
  paths = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  ids = lexical_ids.build_lexical_ids(np.zeros((4, 2)), texts, tok, 2, 2, paths=paths)
  # Cluster {0, 1}: mean tf-idf of "shampoo" (1.5 ln 2) beats "hair" (ln 2) and "argan"/"keratin"
  # (ln(10/3) / 2). Leaf {0}: "shampoo" is best but already in the ID, so "argan" (ln(10/3))
  # beats "hair" (ln 2). "a" (one character) never names a cluster.
  assert ids[0] == ("shampoo", "argan")
  assert ids[1] == ("shampoo", "keratin")
  # Items 2 and 3 get the same names (ties: lower token id) and so collision suffixes.
  assert ids[2] == ("lipstick", "red", "0") and ids[3] == ("lipstick", "red", "1")


def test_suffixing_repeats_until_unique():
  out = lexical_ids.add_collision_suffixes([("a",), ("a",), ("a", "0"), ("b",)])
  assert out == [("a", "0", "0"), ("a", "1"), ("a", "0", "1"), ("b",)]
  assert len(set(out)) == 4


# --- ID and neighbour files ---------------------------------------------------------------------

ITEMS = ["B01", "B02", "B03"]
IDS = [("▁nail", "▁red"), ("▁lip",), ("▁hair", "ren", "0")]


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_id_file_round_trip(tmp_path):
  path = str(tmp_path / "ids.txt")
  id_files.write_id_file(path, ITEMS, IDS)
  assert open(path, encoding="utf-8").read().splitlines()[0] == "B01 |▁nail|▁red"
  assert id_files.read_id_file(path, ITEMS) == IDS
  # Lines may come in any order; the result follows the dataset's item order.
  lines = open(path, encoding="utf-8").read().splitlines()[::-1]
  assert id_files.read_id_file(_write(tmp_path, "rev.txt", "\n".join(lines) + "\n"), ITEMS) == IDS


@pytest.mark.parametrize("text, message", [
    ("B01 |a\nB02 b\nB03 |c\n", "line 2: expected 'ITEM |tok"),
    ("B01 |a\nB02\nB03 |c\n", "line 2: expected 'ITEM |tok"),
    ("B01 |a\nB02 |b||x\nB03 |c\n", "line 2: empty token"),
    ("B01 |a\nB02 |b|x y\nB03 |c\n", "line 2: empty token or whitespace"),
    ("B01 |a\nB09 |b\nB03 |c\n", "line 2: item 'B09' is not in the dataset"),
    ("B01 |a\nB01 |b\nB03 |c\n", "line 2: item 'B01' already has line 1"),
    ("B01 |a\nB02 |b\nB03 |a\n", "line 3: item 'B03' has the same ID as 'B01'"),
    ("B01 |a\nB03 |c\n", "1 item(s) of the dataset have no line, e.g. 'B02'"),
])
def test_id_file_errors_name_file_and_line(tmp_path, text, message):
  path = _write(tmp_path, "ids.txt", text)
  with pytest.raises(DataError, match=re.escape(message)) as e:
    id_files.read_id_file(path, ITEMS)
  assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_neighbour_file_round_trip(tmp_path):
  nb = np.array([[1, 2], [2, 0], [0, 1]])
  path = str(tmp_path / "similar.txt")
  id_files.write_neighbour_file(path, ITEMS, nb)
  assert open(path).read().splitlines()[:2] == ["anchor top1 top2", "B01 B02 B03"]
  np.testing.assert_array_equal(id_files.read_neighbour_file(path, ITEMS), nb)
  np.testing.assert_array_equal(id_files.read_neighbour_file(path, ITEMS, k=1), nb[:, :1])


@pytest.mark.parametrize("text, k, message", [
    ("anchor top1\nB01 B02\nB02 B01\nB03 B01\n", 2, "line 2: 1 neighbours, expected at least 2"),
    ("B01 B02\nB02 B07\nB03 B01\n", 1, "line 2: item 'B07' is not in the dataset"),
    ("B01 B02\nB01 B03\nB03 B01\n", 1, "line 2: item 'B01' already has line 1"),
    ("B01 B02\nB03 B01\n", 1, "have no line, e.g. 'B02'"),
])
def test_neighbour_file_errors(tmp_path, text, k, message):
  path = _write(tmp_path, "similar.txt", text)
  with pytest.raises(DataError, match=re.escape(message)):
    id_files.read_neighbour_file(path, ITEMS, k)


def test_authors_files_load_aligned_to_the_dataset(data_dir):
  ds = load_dataset("amazon_toys", data_dir)
  folder = os.path.join(data_dir, "amazon_toys")
  ids = id_files.read_id_file(id_files.authors_id_path(folder), ds.item_ids)
  assert len(ids) == ds.num_items == len(set(ids))
  assert {len(w) for w in ids} == {5, 6}  # l = 5 levels, plus a suffix after a collision
  assert all(w[-1].isdigit() for w in ids if len(w) == 6)
  nb = id_files.read_neighbour_file(os.path.join(folder, "similar_item_sasrec.txt"),
                                    ds.item_ids, 10)
  assert nb.shape == (ds.num_items, 10)
  assert not (nb == np.arange(ds.num_items)[:, None]).any()
  with pytest.raises(DataError, match="expected one item_generative_indexing"):
    id_files.authors_id_path(os.path.join(data_dir, "ml-100k"))
