"""The RDLAE paper's other datasets in the official release's files (not shipped here): pre-split
strong-generalization folders (ML-20M, Netflix, MSD, Yelp2018, Amazon-book) and LightGCN weak ones
(Yelp2018, Amazon-book); their presets carry the official scripts' hyperparameters, and Amazon-book's
dense solve is refused before it allocates on a 24 GiB machine."""

import numpy as np
import pytest

from configs import lae as lae_configs
from lae_jax import linalg
from lae_jax import run as lae_run
from recsys_core import readers
from recsys_core.errors import ConfigError, DataError

STRONG = ("ml-20m_strong", "netflix_strong", "msd_strong", "yelp2018_strong", "amazon-book_strong")
WEAK = ("yelp2018_weak", "amazon-book_weak")
STRONG_FILES = {"train.txt": "0 0 1 2\n1 1 3\n2 0 3 4\n3 2 4\n",
                "valid_in.txt": "4 0 1\n5 3\n", "valid.txt": "4 4\n5 1\n",
                "test_in.txt": "6 1 2\n", "test.txt": "6 5\n"}   # item 5 only in a target
WEAK_FILES = {"train.txt": "0 0 1\n1 2 3\n2 1 3\n", "test.txt": "0 2\n1 0\n2 4\n"}


def _folder(root, name, files):
  folder = root / name
  folder.mkdir(parents=True, exist_ok=True)
  for file, text in files.items():
    (folder / file).write_text(text)
  return str(root)


@pytest.mark.parametrize("name", STRONG)
def test_strong_folder_without_item_list_counts_columns_as_the_official_loader(tmp_path, name):
  ds, split = readers.load_presplit(name, _folder(tmp_path, name, STRONG_FILES))
  assert split.protocol == "strong" and split.num_items == 6   # 0..max id over the five files
  assert list(ds.item_ids) == [str(j) for j in range(6)]
  assert split.train.shape == (4, 6) and split.valid.fold_in.shape == (2, 6)
  np.testing.assert_array_equal(split.test.target.toarray(), [[0, 0, 0, 0, 0, 1]])
  assert ds.name == name


def test_strong_folder_uses_its_item_list_when_present(tmp_path):
  files = {**STRONG_FILES, "unique_sid.txt": "".join(f"s{j}\n" for j in range(7))}
  ds, split = readers.load_presplit("ml-20m_strong", _folder(tmp_path, "ml-20m_strong", files))
  assert split.num_items == 7 and ds.item_ids[6] == "s6"


@pytest.mark.parametrize("name", WEAK)
def test_weak_folder(tmp_path, name):
  _, split = readers.load_presplit(name, _folder(tmp_path, name, WEAK_FILES))
  assert split.protocol == "weak" and split.train.shape == (3, 5) and split.valid is None


@pytest.mark.parametrize("name,file,text,line,what", [
    ("netflix_strong", "train.txt", "0 0 1\n1 1 x3\n", 2, "is not a number"),
    ("msd_strong", "valid.txt", "4 4\n4 1\n", 2, "already has line 1"),
    ("ml-20m_strong", "test.txt", "7 5\n", 1, "do not line up"),
    ("yelp2018_strong", "test_in.txt", "6 -1 2\n", 1, "out of range"),
    ("amazon-book_strong", "valid_in.txt", "4 0 1\n5 3 2.5\n", 2, "is not a number"),
    ("yelp2018_weak", "test.txt", "0 2\n1 0\n2 four\n", 3, "is not a number"),
    ("amazon-book_weak", "train.txt", "0 0 1\n0 2 3\n", 2, "already has line 1"),
])
def test_malformed_file_is_one_line_naming_file_and_line(tmp_path, name, file, text, line, what):
  files = {**(WEAK_FILES if name.endswith("_weak") else STRONG_FILES), file: text}
  with pytest.raises(DataError) as error:
    readers.load_presplit(name, _folder(tmp_path, name, files))
  message = str(error.value)
  assert "\n" not in message and f"{name}/{file}, line {line}: " in message and what in message


@pytest.mark.parametrize("name,files,fix", [
    ("msd_strong", {k: v for k, v in STRONG_FILES.items() if k != "valid.txt"}, "valid.txt: no such file"),
    ("yelp2018_weak", {"train.txt": WEAK_FILES["train.txt"], "test.txt": "\n\n"}, "test.txt: empty file"),
])
def test_missing_or_empty_file(tmp_path, name, files, fix):
  with pytest.raises(DataError, match=fix):
    readers.load_presplit(name, _folder(tmp_path, name, files))
  with pytest.raises(DataError, match=r"no such folder; set --config.data_dir"):
    readers.load_presplit(name, str(tmp_path / "elsewhere"))


# (dataset, model) -> the official strong|weak/<dataset>.sh line, in our names (their EASE
# --diag_const=False is LAE, EDLAE --diag_const=False is DLAE).
OFFICIAL = {
    ("ml-20m_strong", "lae"): dict(lam=10000.0), ("ml-20m_strong", "rdlae"): dict(lam=1000.0, p=0.2, xi=0.6),
    ("ml-20m_strong", "gfcf"): dict(alpha=1.0), ("netflix_strong", "rlae"): dict(lam=2000.0, xi=0.5),
    ("netflix_strong", "edlae"): dict(lam=600.0, p=0.3), ("msd_strong", "dlae"): dict(lam=30.0, p=0.4),
    ("msd_strong", "ease"): dict(lam=100.0), ("yelp2018_strong", "rdlae"): dict(lam=200.0, p=0.6, xi=0.3),
    ("amazon-book_strong", "rlae"): dict(lam=70.0, xi=0.5), ("amazon-book_strong", "gfcf"): dict(alpha=0.0),
    ("yelp2018_weak", "rdlae"): dict(lam=200.0, p=0.7, xi=0.2), ("amazon-book_weak", "ease"): dict(lam=70.0),
    ("amazon-book_weak", "edlae"): dict(lam=50.0, p=0.2),
}


@pytest.mark.parametrize("dataset,model", sorted(OFFICIAL))
def test_presets_carry_the_official_scripts_hyperparameters(dataset, model):
  config = lae_configs.get_config(f"{model}_{dataset}")
  assert {k: config[k] for k in OFFICIAL[dataset, model]} == OFFICIAL[dataset, model]
  assert (config.dataset, config.protocol) == (dataset, "presplit")
  assert config.recall_normalization == ("size" if dataset.endswith("_weak") else "min")


@pytest.mark.parametrize("dataset,top", [("ml-20m_strong", 10000.0), ("netflix_strong", 40000.0),
                                         ("gowalla_strong", 300.0), ("amazon-book_weak", 90.0)])
def test_search_grids_follow_the_official_ranges(dataset, top):
  search = lae_configs.get_config(f"rdlae_{dataset}").search
  assert search.lam[0] == 10.0 and search.lam[-1] == top
  assert set(search.lam) <= set(lae_configs.LAMBDA_LADDER)
  assert tuple(search.p) == tuple(search.xi) == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_a_preset_runs_end_to_end_on_a_small_folder(tmp_path):
  config = lae_configs.get_config("rdlae_yelp2018_strong")
  config.data_dir = _folder(tmp_path, "yelp2018_strong", STRONG_FILES)
  config.progress, config.ks = False, (2, 5)   # ks <= the 6 items
  metrics = lae_run.run(config, str(tmp_path), "train")
  assert metrics["data/items"] == 6 and 0.0 <= metrics["test/recall@5"] <= 1.0


AMAZON_BOOK_ITEMS = 91599
GIB24 = 24 * 2**30


def test_amazon_book_strong_is_refused_before_allocating(tmp_path, monkeypatch):
  """91,599 items: a dense float32 n x n matrix is 31.3 GiB on either route; a 24 GiB machine
  refuses before allocating it (a few users, so the Woodbury route is the one taken)."""
  last = AMAZON_BOOK_ITEMS - 1
  files = {"train.txt": f"0 0 1 {last}\n1 1 2\n2 0 2\n", "valid_in.txt": "3 0\n", "valid.txt": "3 1\n",
           "test_in.txt": "4 1\n", "test.txt": "4 2\n"}
  monkeypatch.setattr(linalg, "available_memory_bytes", lambda: GIB24)
  monkeypatch.setattr(linalg, "inverse_with_diagonal",
                      lambda *a, **k: pytest.fail("allocated despite the refusal"))
  config = lae_configs.get_config("ease_amazon-book_strong")
  config.data_dir, config.progress = _folder(tmp_path, "amazon-book_strong", files), False
  with pytest.raises(ConfigError, match=r"91599 x 91599 float32 matrix \(31\.3 GiB\)"):
    lae_run.run(config, str(tmp_path), "train")


def test_amazon_book_weak_is_refused_before_allocating(monkeypatch):
  """Weak: the training users are ranked from the Woodbury factors, [m, m] + 2 [m, n] float32:
  46.3 GiB for Amazon-book's 52,643 users, refused on 24 GiB; gowalla weak (29,858 users,
  40,981 items) needs 12.4 GiB and passes."""
  monkeypatch.setattr(linalg, "available_memory_bytes", lambda: GIB24)
  with pytest.raises(ConfigError, match=r"52643 x 91599 float32 arrays \(46\.3 GiB\)"):
    linalg.check_training_rows_fit(52643, AMAZON_BOOK_ITEMS, np.float32)
  linalg.check_training_rows_fit(29858, 40981, np.float32)
