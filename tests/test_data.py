"""Data layer: readers (on small files written here), filters, splits, the synthetic dataset."""

import gzip
import os

import numpy as np
import pytest

from recsys_core import filters, parsing, readers, splits
from recsys_core.dataset import DataError
from recsys_core.synthetic import make_synthetic


def _write(path, text, encoding="utf-8"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wt", encoding=encoding) as f:
    f.write(text)
  return str(path)


def _raw_sequences(ds):
  """{raw user id: [raw item ids in order]}."""
  return {ds.user_ids[u]: [ds.item_ids[i] for i in ds.sequence(u)] for u in range(ds.num_users)}


def _dense(m):
  return np.asarray(m.todense())


# --- readers -----------------------------------------------------------------------------------

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "10\t5\t4\t300\n"
         "2\t7\t1\t200\n"
         "10\t7\t5\t100\n"
         "2\t5\t3\t200\n"
         "10\t30\t2\t300\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "5\tToy Story\t1995\tAnimation Children's Comedy\n"
        "7\tHeat\t\tAction Thriller\n"
        "99\tNever Rated\t2000\tDrama\n")


def test_recbole_reader_sorts_ids_and_time_and_standardises_text(tmp_path):
  ds = readers.read_recbole(_write(tmp_path / "x.inter", INTER), _write(tmp_path / "x.item", ITEM))
  assert ds.name == "x"
  assert list(ds.user_ids) == ["2", "10"]  # numeric order, not lexicographic
  assert list(ds.item_ids) == ["5", "7", "30"]  # item 99 has no interaction
  # Per user by timestamp; the tie (2: items 7 and 5 at 200, 10: 5 and 30 at 300) keeps file order.
  assert _raw_sequences(ds) == {"2": ["7", "5"], "10": ["7", "5", "30"]}
  np.testing.assert_array_equal(ds.timestamps, [200, 200, 100, 300, 300])
  np.testing.assert_array_equal(ds.ratings, [1, 3, 5, 4, 2])
  assert ds.ratings.dtype == np.float32 and ds.items.dtype == np.int32
  assert ds.indptr.dtype == np.int64
  assert ds.item_text["title"] == ["Toy Story", "Heat", None]
  assert ds.item_text["year"] == ["1995", None, None]
  assert ds.item_text["genres"] == ["Animation, Children's, Comedy", "Action, Thriller", None]


def test_recbole_lastfm_style_keeps_repeats_and_weight_is_not_a_rating(tmp_path):
  inter = _write(tmp_path / "lastfm.inter", "user_id:token\titem_id:token\tweight:float\t"
                 "timestamp:float\n2\t52\t13\t1000\n2\t52\t15\t1000\n2\t9\t1\t-5\n")
  item = _write(tmp_path / "lastfm.item", "item_id:token\tname:token\turl:token\n"
                "52\tDiary of Dreams\thttp://a\n9\tMoonspell\t\n")
  ds = readers.read_recbole(inter, item)
  assert ds.ratings is None and ds.num_interactions == 3
  assert _raw_sequences(ds) == {"2": ["9", "52", "52"]}
  assert ds.item_text == {"title": ["Moonspell", "Diary of Dreams"], "url": [None, "http://a"]}


def test_lightgcn_reader_keeps_file_order_and_empty_users(tmp_path):
  ds = readers.read_lightgcn(_write(tmp_path / "train.txt", "0 3 1 2\n1 2 0\n2\n"))
  assert list(ds.user_ids) == ["0", "1", "2"] and list(ds.item_ids) == ["0", "1", "2", "3"]
  assert _raw_sequences(ds) == {"0": ["3", "1", "2"], "1": ["2", "0"], "2": []}
  assert ds.timestamps is None


def test_sasrec_reader_groups_ungrouped_users_in_order(tmp_path):
  ds = readers.read_sasrec(_write(tmp_path / "Video.txt", "1 10\n2 3\n1 4\n2 10\n1 3\n"))
  assert _raw_sequences(ds) == {"1": ["10", "4", "3"], "2": ["3", "10"]}
  assert list(ds.item_ids) == ["3", "4", "10"]


def test_user_sequences_with_item_text(tmp_path):
  seq = _write(tmp_path / "user_sequence.txt", "AU2 B01 0002\nAU1 0002 B03 B01\n")
  items = _write(tmp_path / "items.jsonl",
                 '{"asin": "B01", "title": "Nail Polish", "brand": "OPI", "categories": '
                 '["Beauty", "Nails"], "price": 12.0, "salesrank": 344222.0}\n'
                 '{"asin": "0002", "title": "Cream", "price": 3.04}\n'
                 '{"asin": "ZZZ", "title": "never bought"}\n')
  ds = readers.read_user_sequences(seq, items, name="beauty")
  assert list(ds.user_ids) == ["AU1", "AU2"] and list(ds.item_ids) == ["0002", "B01", "B03"]
  assert _raw_sequences(ds) == {"AU1": ["0002", "B03", "B01"], "AU2": ["B01", "0002"]}
  assert ds.item_text["title"] == ["Cream", "Nail Polish", None]
  assert ds.item_text["brand"] == [None, "OPI", None]
  assert ds.item_text["categories"] == [None, "Beauty, Nails", None]
  assert ds.item_text["price"] == ["3.04", "12", None]
  assert ds.item_text["salesrank"] == [None, "344222", None]


def test_ml1m_reader_splits_title_year_and_reads_latin1(tmp_path):
  inter = _write(tmp_path / "ml1m_interactions.tsv.gz", "user_id\tmovie_id\ttimestamp\tts_source\n"
                 "1\t73\t978300055\ttiny_snow\n1\t1\t978300019\ttiny_snow\n"
                 "2\t1001\t978300000\timputed_prev_in_diffurec_order\n")
  movies = _write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                  "73::Misérables, Les (1995)::Drama|Musical\n"
                  "1001::Associate, The (L'Associe)(1982)::Comedy\n", encoding="latin-1")
  ds = readers.read_ml1m(inter, movies)
  assert ds.name == "ml-1m" and ds.ratings is None
  assert _raw_sequences(ds) == {"1": ["1", "73"], "2": ["1001"]}
  assert ds.item_text["title"] == ["Toy Story", "Misérables, Les", "Associate, The (L'Associe)"]
  assert ds.item_text["year"] == ["1995", "1995", "1982"]
  assert ds.item_text["genres"] == ["Animation, Children's, Comedy", "Drama, Musical", "Comedy"]


def _strong_folder(root, valid_target="0 3\n1 2\n2 1\n"):
  d = root / "gowalla_strong"
  _write(d / "unique_sid.txt", "17\n4\n9\n30\n")
  _write(d / "train.txt", "1 0 1 2\n0 3 2\n")
  _write(d / "valid_in.txt", "0 0 1\n1 3 1\n2 0\n")
  _write(d / "valid.txt", valid_target)
  _write(d / "test_in.txt", "5 2 3\n")
  _write(d / "test.txt", "5 0\n")
  return str(root)


def test_strong_folder_preserves_the_split(tmp_path):
  ds, split = readers.load_presplit("gowalla_strong", _strong_folder(tmp_path))
  assert split.protocol == "strong" and split.num_items == 4
  assert list(ds.item_ids) == ["17", "4", "9", "30"]  # column order, as given
  assert list(ds.user_ids) == ["0", "1", "valid:0", "valid:1", "valid:2", "test:5"]
  np.testing.assert_array_equal(_dense(split.train), [[0, 0, 1, 1], [1, 1, 1, 0]])
  np.testing.assert_array_equal(_dense(split.valid.fold_in), [[1, 1, 0, 0], [0, 1, 0, 1],
                                                              [1, 0, 0, 0]])
  np.testing.assert_array_equal(_dense(split.valid.target), [[0, 0, 0, 1], [0, 0, 1, 0],
                                                             [0, 1, 0, 0]])
  np.testing.assert_array_equal(_dense(split.test.fold_in), [[0, 0, 1, 1]])
  np.testing.assert_array_equal(_dense(split.test.target), [[1, 0, 0, 0]])
  assert [list(ds.sequence(u)) for u in range(ds.num_users)] == [
      [3, 2], [0, 1, 2], [0, 1, 3], [3, 1, 2], [0, 1], [2, 3, 0]]


def test_strong_folder_rejects_misaligned_heldout_users(tmp_path):
  root = _strong_folder(tmp_path, valid_target="0 3\n2 2\n1 1\n")
  with pytest.raises(DataError, match=r"valid\.txt, line 2: .*do not line up"):
    readers.load_presplit("gowalla_strong", root)
  root = _strong_folder(tmp_path, valid_target="0 3\n1 2\n")
  with pytest.raises(DataError, match=r"valid_in\.txt, line 3"):
    readers.load_presplit("gowalla_strong", root)


def test_weak_folder_preserves_the_split(tmp_path):
  d = tmp_path / "gowalla_weak"
  _write(d / "train.txt", "0 0 1\n1 2\n2 1 3\n")
  _write(d / "test.txt", "0 2\n1 0 1\n2 0\n")
  ds, split = readers.load_presplit("gowalla_weak", str(tmp_path))
  assert split.protocol == "weak" and split.valid is None
  assert split.test.fold_in is split.train
  np.testing.assert_array_equal(_dense(split.train), [[1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]])
  np.testing.assert_array_equal(_dense(split.test.target), [[0, 0, 1, 0], [1, 1, 0, 0],
                                                            [1, 0, 0, 0]])
  assert _raw_sequences(ds) == {"0": ["0", "1", "2"], "1": ["2", "0", "1"], "2": ["1", "3", "0"]}
  assert readers.load_dataset("gowalla_weak", str(tmp_path)).num_interactions == 9


HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
MALFORMED = [
    # (file name, content, reader, expected line number or None, words in the message)
    ("a.inter", HEADER + "1\t2\t3\t4\n1\t2\t3\n", readers.read_recbole, 3, "columns"),
    ("a.inter", HEADER + "1\t2\t3\t4\n\n1\t2\t3\tnoon\n", readers.read_recbole, 4, "timestamp"),
    ("a.inter", HEADER + "1\t2\tgood\t4\n", readers.read_recbole, 2, "rating"),
    ("a.inter", "user_id\titem_id\n1\t2\n", readers.read_recbole, 1, "type"),
    ("a.inter", "user_id:token\tmovie:token\n1\t2\n", readers.read_recbole, 1, "item_id"),
    ("a.inter", HEADER, readers.read_recbole, None, "no data rows"),
    ("a.item", "item_id:token\ttitle:token\n1\ta\n1\tb\n", readers.read_recbole_items, 3, "twice"),
    ("items.jsonl", '{"asin": "A", "title": "x"}\n{"asin": "B", "title": \n',
     readers.read_jsonl_items, 2, "bad JSON"),
    ("items.jsonl", '{"asin": "A"}\n\n["B"]\n', readers.read_jsonl_items, 3, "asin"),
    ("train.txt", "0 1 2\n1 2 x\n", readers.read_lightgcn, 2, "item id"),
    ("train.txt", "0 1 2\n1 2\n0 3\n", readers.read_lightgcn, 3, "already has line 1"),
    ("Video.txt", "1 2\n1 2 3\n", readers.read_sasrec, 2, "columns"),
    ("Video.txt", "1 2\nu 3\n", readers.read_sasrec, 2, "user id"),
    ("movies.dat", "1::Toy Story (1995)::Comedy\n2::Jumanji (1995)\n", readers.read_movies_dat,
     2, "columns"),
    ("x.tsv.gz", "user_id\tmovie_id\ttimestamp\n1\t2\t3\n1\t2\n", readers.read_ml1m, 3, "columns"),
    ("x.tsv.gz", "user_id\tmovie_id\n1\t2\n", readers.read_ml1m, 1, "timestamp"),
    ("empty.inter", "", readers.read_recbole, None, "empty"),
    ("blank.txt", "\n  \n", readers.read_lightgcn, None, "empty"),
]


@pytest.mark.parametrize("name,content,reader,line,words", MALFORMED,
                         ids=[f"{c[0]}-{c[4]}" for c in MALFORMED])
def test_malformed_files_raise_one_line_errors_naming_file_and_line(tmp_path, name, content,
                                                                    reader, line, words):
  path = _write(tmp_path / name, content)
  with pytest.raises(DataError) as err:
    reader(path)
  msg = str(err.value)
  assert path in msg and words in msg and "\n" not in msg
  if line is not None:
    assert f"line {line}:" in msg


def test_missing_files_and_folders_name_the_path_and_the_fix(tmp_path):
  with pytest.raises(DataError, match="no such file.*--config.data_dir"):
    readers.read_lightgcn(str(tmp_path / "nope.txt"))
  with pytest.raises(DataError, match=f"{tmp_path}/ml-1m: no such folder.*--config.data_dir"):
    readers.load_dataset("ml-1m", str(tmp_path))
  with pytest.raises(DataError, match="unknown dataset 'imdb'"):
    readers.load_dataset("imdb", str(tmp_path))
  with pytest.raises(DataError, match="unknown dataset"):
    readers.load_presplit("ml-1m", str(tmp_path))
  _write(tmp_path / "gowalla_strong" / "unique_sid.txt", "0\n")
  with pytest.raises(DataError, match="train.txt: no such file"):
    readers.load_presplit("gowalla_strong", str(tmp_path))


def test_strong_folder_rejects_items_outside_unique_sid(tmp_path):
  root = _strong_folder(tmp_path)
  _write(tmp_path / "gowalla_strong" / "test.txt", "5 4\n")
  with pytest.raises(DataError, match=r"test\.txt, line 1: item 4 outside 0\.\.3"):
    readers.load_presplit("gowalla_strong", root)


def test_ids_sort_numerically_only_when_all_are_canonical_integers():
  ids, codes = parsing.index_ids(["10", "2", "10", "33"])
  assert list(ids) == ["2", "10", "33"] and list(codes) == [1, 0, 1, 2]
  ids, codes = parsing.index_ids(["7", "07", "10"])  # "07" must not merge into "7"
  assert list(ids) == ["07", "10", "7"] and list(codes) == [2, 0, 1]
  ids, _ = parsing.index_ids(["B01", "0002"])
  assert list(ids) == ["0002", "B01"]


def test_synthetic_ignores_data_dir():
  assert readers.load_dataset("synthetic", "/does/not/exist").name == "synthetic"


# --- filters -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic():
  return make_synthetic()


def _raw_pairs(ds):
  u = ds.user_ids[ds.user_of_interaction()]
  return set(zip(u, ds.item_ids[ds.items]))


def test_k_core_satisfies_the_core_property_and_is_maximal(synthetic):
  core = filters.k_core(synthetic, min_user=12, min_item=25)
  assert 0 < core.num_users < synthetic.num_users and 0 < core.num_items < synthetic.num_items
  assert np.diff(core.indptr).min() >= 12
  assert np.bincount(core.items, minlength=core.num_items).min() >= 25
  assert _raw_pairs(core) <= _raw_pairs(synthetic)
  # Maximal: a naive peeling (one user/item at a time) reaches the same set.
  pairs = _raw_pairs(synthetic)
  while True:
    users = {}
    items = {}
    for u, i in pairs:
      users[u] = users.get(u, 0) + 1
      items[i] = items.get(i, 0) + 1
    bad = {(u, i) for u, i in pairs if users[u] < 12 or items[i] < 25}
    if not bad:
      break
    pairs -= bad
  assert pairs == _raw_pairs(core)
  # Text stays aligned with the re-indexed items; sequences stay chronological.
  title = dict(zip(synthetic.item_ids, synthetic.item_text["title"]))
  assert [title[i] for i in core.item_ids] == core.item_text["title"]
  for u in range(core.num_users):
    assert np.all(np.diff(core.timestamps[core.indptr[u]:core.indptr[u + 1]]) > 0)


def test_rating_filter_and_drop_repeats(tmp_path):
  ds = readers.read_recbole(_write(tmp_path / "x.inter", INTER), _write(tmp_path / "x.item", ITEM))
  pos = filters.filter_rating(ds, 3)
  assert _raw_sequences(pos) == {"2": ["5"], "10": ["7", "5"]}
  assert pos.ratings.min() >= 3 and list(pos.item_ids) == ["5", "7"]
  assert pos.item_text["title"] == ["Toy Story", "Heat"]
  assert filters.filter_rating(ds, 5).num_users == 1
  with pytest.raises(DataError, match="no ratings"):
    filters.filter_rating(make_synthetic(num_users=50, num_items=200, num_clusters=5), 4)

  repeats = readers.read_sasrec(_write(tmp_path / "r.txt", "1 5\n1 6\n1 5\n2 6\n1 6\n1 7\n"))
  once = filters.drop_repeats(repeats)
  assert _raw_sequences(once) == {"1": ["5", "6", "7"], "2": ["6"]}


# --- splits ------------------------------------------------------------------------------------

def _same_split(a, b):
  mats = lambda s: [s.train, s.test.fold_in, s.test.target] + (
      [s.valid.fold_in, s.valid.target] if s.valid else [])
  return all((x != y).nnz == 0 and x.shape == y.shape for x, y in zip(mats(a), mats(b)))


def test_strong_split_is_seeded_disjoint_and_holds_out_a_fifth(synthetic):
  split = splits.strong_split(synthetic, 300, seed=0)
  assert split.protocol == "strong"
  assert _same_split(split, splits.strong_split(synthetic, 300, seed=0))
  assert not _same_split(split, splits.strong_split(synthetic, 300, seed=1))
  train_users, valid_users, test_users, items = splits.strong_partition(synthetic, 300, seed=0)
  assert len(valid_users) == len(test_users) == 300
  assert len(train_users) == synthetic.num_users - 600 == split.train.shape[0]
  assert not set(train_users) & set(valid_users) and not set(valid_users) & set(test_users)
  assert not set(train_users) & set(test_users)
  assert split.num_items == len(items) and split.item_counts().min() >= 1  # training items only
  for ev, users in ((split.valid, valid_users), (split.test, test_users)):
    assert ev.num_users == len(users) and ev.fold_in.multiply(ev.target).nnz == 0
    n_in = np.diff(ev.fold_in.indptr)
    n_tg = np.diff(ev.target.indptr)
    n = n_in + n_tg
    np.testing.assert_array_equal(n_tg, np.where(n >= 5, (0.2 * n).astype(int), 0))
    assert 0.78 < n_in.sum() / n.sum() < 0.84
  # Row r of the test set is user test_users[r], restricted to training items.
  u = test_users[7]
  seq = set(items.searchsorted(i) for i in synthetic.sequence(u) if i in set(items))
  row = set(split.test.fold_in[7].indices) | set(split.test.target[7].indices)
  assert row == seq


def test_weak_split_is_seeded_and_disjoint(synthetic):
  split = splits.weak_split(synthetic, seed=3)
  assert split.protocol == "weak"
  assert _same_split(split, splits.weak_split(synthetic, seed=3))
  assert not _same_split(split, splits.weak_split(synthetic, seed=4))
  all_pairs = synthetic.to_matrix()
  assert split.train.multiply(split.test.target).nnz == 0
  assert ((split.train + split.test.target) != all_pairs).nnz == 0
  assert split.test.fold_in is split.train
  assert split.valid_train.multiply(split.valid.target).nnz == 0
  assert ((split.valid_train + split.valid.target) != split.train).nnz == 0
  assert split.valid.fold_in is split.valid_train
  assert 0.18 < split.test.target.nnz / all_pairs.nnz < 0.22
  assert 0.08 < split.valid.target.nnz / split.train.nnz < 0.12
  assert np.diff(split.test.target.indptr).min() >= 1  # every user (>= 5 items) has a target
  assert splits.weak_split(synthetic, seed=3, valid_fraction=0).valid is None


def test_leave_one_out_picks_the_chronologically_last_items(tmp_path):
  inter = _write(tmp_path / "t.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                 "1\t10\t5\n1\t11\t1\n1\t12\t9\n1\t13\t3\n2\t10\t2\n2\t11\t1\n"
                 "3\t12\t1\n3\t10\t2\n3\t12\t3\n")
  ds = readers.read_recbole(inter)  # user 1 in time: 11 13 10 12; user 3 repeats item 12
  split = splits.leave_one_out(ds)
  assert split.protocol == "loo"
  rows = lambda m: [sorted(ds.item_ids[m[r].indices]) for r in range(ds.num_users)]
  assert rows(split.train) == [["11", "13"], ["10", "11"], ["12"]]
  assert rows(split.valid.target) == [["10"], [], ["10"]]
  assert rows(split.test.target) == [["12"], [], ["12"]]
  assert rows(split.test.fold_in) == [["10", "11", "13"], ["10", "11"], ["10"]]
  assert rows(split.valid.fold_in) == [["11", "13"], ["10", "11"], ["12"]]
  np.testing.assert_array_equal(splits.leave_one_out_train_lengths(ds), [2, 2, 1])


def test_splits_refuse_to_produce_empty_evaluation_sets():
  tiny = make_synthetic(num_users=40, num_items=100, num_clusters=5, mean_length=5)
  pos = np.arange(tiny.num_interactions) - tiny.indptr[tiny.user_of_interaction()]
  two_each, one_each = (filters.select_interactions(tiny, pos < n) for n in (2, 1))
  with pytest.raises(DataError, match="empty split"):
    splits.leave_one_out(two_each)
  with pytest.raises(DataError, match="empty split"):
    splits.strong_split(two_each, 5, seed=0)  # everyone below 5 items: no targets
  with pytest.raises(DataError, match="empty split"):
    splits.weak_split(one_each, seed=0)
  with pytest.raises(DataError, match="num_heldout_users"):
    splits.strong_split(tiny, 20, seed=0)


# --- the synthetic dataset ---------------------------------------------------------------------

def test_synthetic_is_deterministic_with_the_right_sizes(synthetic):
  again = make_synthetic()
  np.testing.assert_array_equal(synthetic.items, again.items)
  np.testing.assert_array_equal(synthetic.timestamps, again.timestamps)
  assert synthetic.item_text == again.item_text
  assert not np.array_equal(make_synthetic(seed=1).items[:100], synthetic.items[:100])
  assert (synthetic.num_users, synthetic.num_items) == (2000, 1000)
  lengths = np.diff(synthetic.indptr)
  assert lengths.min() >= 5 and 18 < lengths.mean() < 22 and lengths.max() > 60
  assert len(filters.drop_repeats(synthetic).items) == synthetic.num_interactions  # no repeats
  for u in range(synthetic.num_users):
    assert np.all(np.diff(synthetic.timestamps[synthetic.indptr[u]:synthetic.indptr[u + 1]]) > 0)
  for field in ("title", "brand", "categories"):
    assert len(synthetic.item_text[field]) == 1000 and all(synthetic.item_text[field])
  assert all(3 <= len(t.split()) <= 5 for t in synthetic.item_text["title"])
  assert len(set(synthetic.item_text["categories"])) == 20


def _top_successor_share(ds, items, cluster):
  """Share of a user's consecutive cluster pairs going to each cluster's most frequent successor."""
  same_user = np.diff(ds.user_of_interaction()) == 0
  trans = np.zeros((cluster.max() + 1,) * 2)
  np.add.at(trans, (cluster[items[:-1]][same_user], cluster[items[1:]][same_user]), 1)
  return trans.max(axis=1).sum() / trans.sum()


def test_synthetic_has_popularity_skew_and_cluster_transitions(synthetic):
  counts = np.sort(np.bincount(synthetic.items, minlength=synthetic.num_items))[::-1]
  assert counts[:100].sum() > 0.28 * counts.sum()  # top 10% of items: ~1/3 of interactions
  _, cluster = np.unique(synthetic.item_text["categories"], return_inverse=True)
  cluster = cluster.ravel()
  assert cluster.max() + 1 == 20
  # Order carries information beyond each user's set of clusters: shuffling within users
  # (which keeps every user's clusters) halves the share of the likely successor.
  rng = np.random.default_rng(0)
  shuffled = np.concatenate([rng.permutation(synthetic.sequence(u))
                             for u in range(synthetic.num_users)])
  ordered = _top_successor_share(synthetic, synthetic.items, cluster)
  assert ordered > 0.5 and ordered > _top_successor_share(synthetic, shuffled, cluster) + 0.2


def _recall_at(scores, evalset, k=20):
  """Mean over users with a target of hits@k / min(k, |target|), fold-in masked."""
  fold_in, target = _dense(evalset.fold_in), _dense(evalset.target)
  scores = np.where(fold_in > 0, -np.inf, scores)
  top = np.argpartition(-scores, k, axis=1)[:, :k]
  hits = np.take_along_axis(target, top, axis=1).sum(1)
  n = target.sum(1)
  return float(np.mean(hits[n > 0] / np.minimum(k, n[n > 0])))


def test_synthetic_is_learnable_by_ease_on_a_strong_split(synthetic):
  split = splits.strong_split(synthetic, 300, seed=0)
  x = _dense(split.train).astype(np.float64)
  p = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
  b = -p / np.diag(p)  # EASE: B = I - P diagMat(1 / diag P), zero diagonal
  np.fill_diagonal(b, 0.0)
  ease = _recall_at(_dense(split.test.fold_in) @ b, split.test)
  popularity = _recall_at(np.tile(split.item_counts().astype(float), (split.test.num_users, 1)),
                          split.test)
  assert ease > 2 * popularity > 0
