"""Every reader against bad input: a one-line DataError naming the file (and line) and the fix.

Each (format, case) writes a good set of small files, spoils one of them, and loads it the way a run
does (`load_dataset`, `load_presplit`, the GRAM / embedding / checkpoint readers). The malformed
rows of tests/test_data.py (wrong column counts, bad JSON, ...) are not repeated here.
"""

import functools
import gzip
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import save as safetensors_bytes

from configs import lae as lae_configs
from gram_jax import hf_convert, id_files, t5
from lae_jax import run as lae_run
from recsys_core import readers, splits
from recsys_core.embed import cache, precomputed
from recsys_core.errors import DataError, RecsysError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GARBAGE = bytes(range(0x80, 0x100))  # not UTF-8 from its first byte
ITEMS = ["A", "B", "C"]


def _npy(array) -> bytes:
  buf = io.BytesIO()
  np.save(buf, np.asarray(array))
  return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _t5_checkpoint() -> tuple:
  """(config.json text, model.safetensors bytes) of a tiny T5 v1.0 (zeros; shapes are what count)."""
  config = t5.T5Config(vocab_size=11, d_model=8, d_kv=4, d_ff=16, num_layers=1,
                       num_decoder_layers=1, num_heads=2, num_prompt_positions=0)
  shapes = jax.eval_shape(lambda: t5.init_params(t5.T5(config), 0))
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
  state = hf_convert.state_dict_from_params(config, params)
  return json.dumps(hf_convert.config_to_hf(config)), safetensors_bytes(state)


def _t5_state_without(name: str) -> bytes:
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
  state = load(_t5_checkpoint()[1])
  del state[name]
  return safetensors_bytes(state)


# --- formats: folder, good files, how a run loads them ----------------------------------------

H = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ML1M_H = "user_id\tmovie_id\ttimestamp\tts_source\n"
FORMATS = {
    "recbole": ("ml-100k", {
        "ml-100k.inter": H + "1\t10\t4\t100\n1\t11\t5\t101\n2\t10\t3\t102\n2\t12\t4\t103\n",
        "ml-100k.item": "item_id:token\tmovie_title:token_seq\n10\tHeat\n11\tAlien\n12\tUp\n"},
        lambda root: readers.load_dataset("ml-100k", root)),
    "ml1m": ("ml-1m", {
        "ml1m_interactions.tsv.gz": ML1M_H + "1\t10\t100\tx\n1\t11\t101\tx\n2\t10\t102\tx\n",
        "movies.dat": "10::Heat (1995)::Action\n11::Alien (1979)::Horror|Sci-Fi\n"},
        lambda root: readers.load_dataset("ml-1m", root)),
    "lightgcn": ("gowalla_weak", {"train.txt": "0 0 1 2\n1 1 2\n2 0 2\n",
                                  "test.txt": "0 3\n1 0\n2 1\n"},
                 lambda root: readers.load_presplit("gowalla_weak", root)),
    "strong": ("gowalla_strong", {
        "unique_sid.txt": "17\n4\n9\n30\n", "train.txt": "1 0 1 2\n0 3 2\n",
        "valid_in.txt": "0 0 1\n1 3 1\n2 0\n", "valid.txt": "0 3\n1 2\n2 1\n",
        "test_in.txt": "5 2 3\n", "test.txt": "5 0\n"},
        lambda root: readers.load_presplit("gowalla_strong", root)),
    "sasrec": ("amazon_video", {"Video.txt": "1 10\n1 11\n1 12\n2 10\n2 12\n2 11\n"},
               lambda root: splits.leave_one_out(readers.load_dataset("amazon_video", root))),
    "user_sequence": ("amazon_beauty", {
        "user_sequence.txt": "U1 A B C\nU2 B C A\n",
        "items.jsonl": '{"asin": "A", "title": "a"}\n{"asin": "B", "title": "b"}\n'},
        lambda root: splits.leave_one_out(readers.load_dataset("amazon_beauty", root))),
    "gram_ids": ("amazon_toys", {"item_generative_indexing_hierarchy_v1.txt":
                                 "A |x|y\nB |x|z\nC |w|y\n"},
                 lambda root: id_files.read_id_file(
                     id_files.authors_id_path(os.path.join(root, "amazon_toys")), ITEMS)),
    "neighbours": ("amazon_toys", {"similar_item_sasrec.txt": "anchor top1 top2\nA B C\nB A C\n"
                                                              "C A B\n"},
                   lambda root: id_files.read_neighbour_file(
                       os.path.join(root, "amazon_toys", "similar_item_sasrec.txt"), ITEMS, 2)),
    "npy": ("emb", {"e.npy": lambda: _npy(np.ones((3, 4), np.float32))},
            lambda root: precomputed.load_precomputed(os.path.join(root, "emb", "e.npy"), ITEMS)),
    "safetensors": ("emb", {"e.safetensors": lambda: safetensors_bytes({"e": np.ones((3, 4),
                                                                                   np.float32)})},
                    lambda root: precomputed.load_precomputed(
                        os.path.join(root, "emb", "e.safetensors"), ITEMS)),
    "npy_ids": ("emb", {"e.npy": lambda: _npy(np.ones((4, 2), np.float32)),
                        "ids.txt": "A\nB\nZ\nC\n"},
                lambda root: precomputed.load_precomputed(os.path.join(root, "emb", "e.npy"), ITEMS,
                                                          os.path.join(root, "emb", "ids.txt"))),
    "hf_t5": ("ckpt", {"config.json": lambda: _t5_checkpoint()[0],
                       "model.safetensors": lambda: _t5_checkpoint()[1]},
              lambda root: hf_convert.load_checkpoint(os.path.join(root, "ckpt"))),
}

# (format, case, {file: new content, None = deleted}, file the message names ("" = the folder),
#  its line or None, words the message must hold)
CASES = [
    ("recbole", "missing", {"ml-100k.inter": None}, "ml-100k.inter", None, "--config.data_dir"),
    ("recbole", "empty", {"ml-100k.inter": ""}, "ml-100k.inter", None, "empty file"),
    ("recbole", "garbage", {"ml-100k.inter": H.encode() + b"1\t10\t4\t100\n" + GARBAGE},
     "ml-100k.inter", 3, "byte 0x80 is not utf-8 text"),
    ("recbole", "nul_bytes", {"ml-100k.inter": H + "1\t1\0\t4\t100\n"}, "ml-100k.inter", 2, "NUL"),
    ("recbole", "truncated", {"ml-100k.inter": H + "1\t10\t4\t100\n1\t11"}, "ml-100k.inter", 3,
     "columns"),
    ("recbole", "non_numeric", {"ml-100k.inter": H + "1\t10\tfour\t100\n"}, "ml-100k.inter", 2,
     "rating 'four' is not a number"),
    ("recbole", "non_finite", {"ml-100k.inter": H + "1\t10\t4\t100\n1\t11\t4\tnan\n"},
     "ml-100k.inter", 3, "timestamp 'nan' is not a finite number"),
    ("recbole", "empty_id", {"ml-100k.inter": H + "1\t10\t4\t100\n\t11\t4\t100\n"},
     "ml-100k.inter", 3, "empty user_id"),
    ("recbole", "duplicate_column", {"ml-100k.inter": "user_id:token\titem_id:token\t"
                                                      "item_id:token\n1\t2\t3\n"},
     "ml-100k.inter", 1, "repeated"),
    ("recbole", "item_garbage", {"ml-100k.item": GARBAGE}, "ml-100k.item", 1, "not utf-8"),
    ("recbole", "item_duplicate", {"ml-100k.item": "item_id:token\ttitle:token\n10\ta\n11\tb\n"
                                                   "10\tc\n"}, "ml-100k.item", 4, "listed twice"),
    ("recbole", "item_truncated", {"ml-100k.item": "item_id:token\ttitle:token\n10\ta\n11\n"},
     "ml-100k.item", 3, "columns"),
    ("ml1m", "missing", {"ml1m_interactions.tsv.gz": None}, "ml1m_interactions.tsv.gz", None,
     "--config.data_dir"),
    ("ml1m", "empty", {"ml1m_interactions.tsv.gz": gzip.compress(b"")},
     "ml1m_interactions.tsv.gz", None, "empty file"),
    ("ml1m", "garbage", {"ml1m_interactions.tsv.gz": GARBAGE}, "ml1m_interactions.tsv.gz", None,
     "Not a gzipped file"),
    ("ml1m", "truncated_gzip", {"ml1m_interactions.tsv.gz": gzip.compress(
        (ML1M_H + "1\t10\t100\tx\n" * 50).encode())[:-12]}, "ml1m_interactions.tsv.gz", None,
     "truncated or damaged"),
    ("ml1m", "garbage_inside_gzip", {"ml1m_interactions.tsv.gz": gzip.compress(
        ML1M_H.encode() + GARBAGE)}, "ml1m_interactions.tsv.gz", 2, "not utf-8"),
    ("ml1m", "truncated", {"ml1m_interactions.tsv.gz": ML1M_H + "1\t10\t100\tx\n1\t11\n"},
     "ml1m_interactions.tsv.gz", 3, "columns"),
    ("ml1m", "non_numeric", {"ml1m_interactions.tsv.gz": ML1M_H + "1\t10\tnoon\tx\n"},
     "ml1m_interactions.tsv.gz", 2, "timestamp 'noon'"),
    ("ml1m", "movies_duplicate", {"movies.dat": "10::Heat (1995)::Action\n10::Heat::Drama\n"},
     "movies.dat", 2, "listed twice"),
    ("ml1m", "movies_truncated", {"movies.dat": "10::Heat (1995)::Action\n11::Alien\n"},
     "movies.dat", 2, "columns"),
    ("lightgcn", "missing", {"test.txt": None}, "test.txt", None, "--config.data_dir"),
    ("lightgcn", "empty", {"train.txt": "\n"}, "train.txt", None, "empty file"),
    ("lightgcn", "garbage", {"train.txt": b"0 0 1\n" + GARBAGE}, "train.txt", 2, "not utf-8"),
    ("lightgcn", "non_numeric", {"train.txt": "0 0 1\n1 2 x\n"}, "train.txt", 2, "item id 'x'"),
    ("lightgcn", "out_of_range", {"test.txt": "0 3\n1 -2\n"}, "test.txt", 2, "out of range"),
    ("lightgcn", "duplicate", {"train.txt": "0 1\n1 2\n0 3\n"}, "train.txt", 3,
     "already has line 1"),
    ("lightgcn", "empty_split", {"test.txt": "0\n1\n2\n"}, "test.txt", None, "empty split"),
    ("strong", "missing", {"unique_sid.txt": None}, "unique_sid.txt", None, "--config.data_dir"),
    ("strong", "empty", {"valid.txt": ""}, "valid.txt", None, "empty file"),
    ("strong", "garbage", {"test_in.txt": GARBAGE}, "test_in.txt", 1, "not utf-8"),
    ("strong", "non_numeric", {"train.txt": "1 0 1 2\n0 3 2x\n"}, "train.txt", 2, "item id '2x'"),
    ("strong", "out_of_range", {"valid_in.txt": "0 0 1\n1 3 7\n2 0\n"}, "valid_in.txt", 2,
     "outside 0..3"),
    ("strong", "duplicate", {"unique_sid.txt": "17\n4\n17\n30\n"}, "unique_sid.txt", 3,
     "already on line 1"),
    ("strong", "duplicate_user", {"train.txt": "1 0 1\n1 2\n"}, "train.txt", 2, "already has line"),
    ("strong", "truncated", {"unique_sid.txt": "17\n4 9\n30\n"}, "unique_sid.txt", 2,
     "one item id"),
    ("strong", "empty_split", {"valid.txt": "0\n1\n2\n"}, "valid.txt", None, "empty split"),
    ("sasrec", "missing", {"Video.txt": None}, "Video.txt", None, "--config.data_dir"),
    ("sasrec", "empty", {"Video.txt": ""}, "Video.txt", None, "empty file"),
    ("sasrec", "garbage", {"Video.txt": b"1 10\n" + GARBAGE}, "Video.txt", 2, "not utf-8"),
    ("sasrec", "truncated", {"Video.txt": "1 10\n1\n"}, "Video.txt", 2, "columns"),
    ("sasrec", "non_numeric", {"Video.txt": "1 10\n1 ten\n"}, "Video.txt", 2, "item id 'ten'"),
    ("sasrec", "out_of_range", {"Video.txt": "1 10\n1 0\n"}, "Video.txt", 2, "out of range"),
    ("sasrec", "empty_split", {"Video.txt": "1 10\n1 11\n2 10\n"}, "Video.txt", None,
     "empty split"),
    ("user_sequence", "missing", {"user_sequence.txt": None}, "user_sequence.txt", None,
     "--config.data_dir"),
    ("user_sequence", "empty", {"user_sequence.txt": " \n"}, "user_sequence.txt", None,
     "empty file"),
    ("user_sequence", "garbage", {"user_sequence.txt": b"U1 A B C\nU2 " + GARBAGE},
     "user_sequence.txt", 2, "not utf-8"),
    ("user_sequence", "duplicate", {"user_sequence.txt": "U1 A B C\nU1 B\n"}, "user_sequence.txt",
     2, "already has line 1"),
    ("user_sequence", "empty_split", {"user_sequence.txt": "U1 A B\nU2 C\n"}, "user_sequence.txt",
     None, "empty split"),
    ("user_sequence", "items_garbage", {"items.jsonl": GARBAGE}, "items.jsonl", 1, "not utf-8"),
    ("user_sequence", "items_truncated", {"items.jsonl": '{"asin": "A", "title": "a"}\n{"asin'},
     "items.jsonl", 2, "bad JSON"),
    ("user_sequence", "items_duplicate", {"items.jsonl": '{"asin": "A"}\n{"asin": "A"}\n'},
     "items.jsonl", 2, "listed twice"),
    ("gram_ids", "missing", {"item_generative_indexing_hierarchy_v1.txt": None}, "", None,
     "found 0; set --config.data_dir"),
    ("gram_ids", "empty", {"item_generative_indexing_hierarchy_v1.txt": ""},
     "item_generative_indexing_hierarchy_v1.txt", None, "empty file"),
    ("gram_ids", "garbage", {"item_generative_indexing_hierarchy_v1.txt": b"A |x|y\n" + GARBAGE},
     "item_generative_indexing_hierarchy_v1.txt", 2, "not utf-8"),
    ("gram_ids", "truncated", {"item_generative_indexing_hierarchy_v1.txt": "A |x|y\nB\n"},
     "item_generative_indexing_hierarchy_v1.txt", 2, "expected 'ITEM |tok|tok|...'"),
    ("gram_ids", "out_of_range", {"item_generative_indexing_hierarchy_v1.txt": "A |x\nZ |y\n"},
     "item_generative_indexing_hierarchy_v1.txt", 2, "'Z' is not in the dataset"),
    ("gram_ids", "duplicate", {"item_generative_indexing_hierarchy_v1.txt": "A |x\nB |y\nA |z\n"},
     "item_generative_indexing_hierarchy_v1.txt", 3, "already has line 1"),
    ("gram_ids", "duplicate_id", {"item_generative_indexing_hierarchy_v1.txt": "A |x\nB |x\n"},
     "item_generative_indexing_hierarchy_v1.txt", 2, "same ID as 'A'"),
    ("gram_ids", "uncovered", {"item_generative_indexing_hierarchy_v1.txt": "A |x\nC |y\n"},
     "item_generative_indexing_hierarchy_v1.txt", None, "have no line, e.g. 'B'"),
    ("neighbours", "missing", {"similar_item_sasrec.txt": None}, "similar_item_sasrec.txt", None,
     "--config.data_dir"),
    ("neighbours", "empty", {"similar_item_sasrec.txt": "anchor top1 top2\n"},
     "similar_item_sasrec.txt", None, "no neighbour lines"),
    ("neighbours", "garbage", {"similar_item_sasrec.txt": b"anchor top1\n" + GARBAGE},
     "similar_item_sasrec.txt", 2, "not utf-8"),
    ("neighbours", "truncated", {"similar_item_sasrec.txt": "A B C\nB A\n"},
     "similar_item_sasrec.txt", 2, "1 neighbours, expected at least 2"),
    ("neighbours", "out_of_range", {"similar_item_sasrec.txt": "A B C\nB A Z\n"},
     "similar_item_sasrec.txt", 2, "'Z' is not in the dataset"),
    ("neighbours", "duplicate", {"similar_item_sasrec.txt": "A B C\nB A C\nA C B\n"},
     "similar_item_sasrec.txt", 3, "already has line 1"),
    ("neighbours", "uncovered", {"similar_item_sasrec.txt": "A B C\nB A C\n"},
     "similar_item_sasrec.txt", None, "have no line, e.g. 'C'"),
    ("npy", "missing", {"e.npy": None}, "e.npy", None, "config.precomputed"),
    ("npy", "empty", {"e.npy": b""}, "e.npy", None, "no NUMPY header"),
    ("npy", "garbage", {"e.npy": GARBAGE}, "e.npy", None, "no NUMPY header"),
    ("npy", "truncated", {"e.npy": lambda: _npy(np.ones((30, 4), np.float32))[:200]}, "e.npy",
     None, "not a plain .npy array"),
    ("npy", "inf", {"e.npy": lambda: _npy([[0.0], [1.0], [np.inf]])}, "e.npy", None,
     "NaN/inf values, first for item 'C'"),
    ("npy", "too_large", {"e.npy": lambda: _npy([[0.0], [1.0], [1e39]])}, "e.npy", None,
     "NaN/inf"),
    ("npy", "no_columns", {"e.npy": lambda: _npy(np.ones((3, 0), np.float32))}, "e.npy", None,
     "dim > 0"),
    ("npy", "complex", {"e.npy": lambda: _npy(np.ones((3, 2), np.complex64))}, "e.npy", None,
     "dtype complex64"),
    ("safetensors", "missing", {"e.safetensors": None}, "e.safetensors", None,
     "config.precomputed"),
    ("safetensors", "empty", {"e.safetensors": b""}, "e.safetensors", None, "not a readable"),
    ("safetensors", "garbage", {"e.safetensors": GARBAGE}, "e.safetensors", None,
     "not a readable"),
    ("safetensors", "truncated", {"e.safetensors": lambda: safetensors_bytes(
        {"e": np.ones((3, 4), np.float32)})[:-8]}, "e.safetensors", None, "not a readable"),
    ("safetensors", "rows", {"e.safetensors": lambda: safetensors_bytes(
        {"e": np.ones((2, 4), np.float32)})}, "e.safetensors", None, "2 rows but the dataset has 3"),
    ("safetensors", "nan", {"e.safetensors": lambda: safetensors_bytes(
        {"e": np.array([[0.0], [np.nan], [1.0]], np.float32)})}, "e.safetensors", None,
     "NaN/inf values, first for item 'B'"),
    ("safetensors", "dtype", {"e.safetensors": lambda: safetensors_bytes(
        {"e": np.ones((3, 4), np.int32)})}, "e.safetensors", None, "dtype int32"),
    ("safetensors", "rank", {"e.safetensors": lambda: safetensors_bytes(
        {"e": np.ones((3, 4, 2), np.float32)})}, "e.safetensors", None, "shape (3, 4, 2)"),
    ("npy_ids", "missing", {"ids.txt": None}, "ids.txt", None, "config.precomputed_ids"),
    ("npy_ids", "garbage", {"ids.txt": b"A\nB\n" + GARBAGE}, "ids.txt", 3, "not utf-8"),
    ("npy_ids", "duplicate", {"ids.txt": "A\nB\nA\nC\n"}, "ids.txt", None,
     "ids.txt:3: item 'A' already on line 1"),
    ("npy_ids", "empty_id", {"ids.txt": "A\n\nB\nC\n"}, "ids.txt", None, "ids.txt:2: empty item id"),
    ("hf_t5", "missing", {"config.json": None}, "config.json", None, "config.model.hf_checkpoint"),
    ("hf_t5", "garbage", {"config.json": GARBAGE}, "config.json", None, "utf-8"),
    ("hf_t5", "truncated", {"config.json": '{"d_model": 8, "num_la'}, "config.json", None,
     "Unterminated string"),
    ("hf_t5", "non_numeric", {"config.json": '{"d_model": "eight"}'}, "config.json", None,
     "d_model='eight' is not an integer"),
    ("hf_t5", "t5_v1_1", {"config.json": '{"feed_forward_proj": "gated-gelu", '
                                        '"tie_word_embeddings": false}'}, "config.json", None,
     "only T5 v1.0"),
    ("hf_t5", "weights_missing", {"model.safetensors": None}, "model.safetensors", None,
     "no model.safetensors"),
    ("hf_t5", "weights_garbage", {"model.safetensors": GARBAGE}, "model.safetensors", None,
     "not a readable .safetensors file"),
    ("hf_t5", "weights_truncated", {"model.safetensors": lambda: _t5_checkpoint()[1][:-100]},
     "model.safetensors", None, "not a readable .safetensors file"),
    ("hf_t5", "tensor_missing", {"model.safetensors": lambda: _t5_state_without(
        "decoder.block.0.layer.2.DenseReluDense.wo.weight")}, "model.safetensors", None,
     "lacks decoder.block.0.layer.2.DenseReluDense.wo.weight"),
]


def _write_folder(folder: str, files: dict) -> None:
  os.makedirs(folder, exist_ok=True)
  for name, content in files.items():
    path = os.path.join(folder, name)
    if content is None:
      if os.path.exists(path):
        os.remove(path)
      continue
    if callable(content):
      content = content()
    if isinstance(content, str):
      content = content.encode()
      if name.endswith(".gz"):  # text is written compressed; bytes as given (damaged archives)
        content = gzip.compress(content)
    with open(path, "wb") as f:
      f.write(content)


@pytest.mark.parametrize("fmt,case,spoil,name,line,words", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_raises_one_line_naming_file_and_line(tmp_path, fmt, case, spoil, name, line,
                                                        words):
  del case
  folder_name, good, load = FORMATS[fmt]
  folder = os.path.join(str(tmp_path), folder_name)
  _write_folder(folder, {**good, **spoil})
  with pytest.raises(DataError) as err:
    load(str(tmp_path))
  msg = str(err.value)
  assert "\n" not in msg, msg
  assert (os.path.join(folder, name) if name else folder) in msg, msg
  assert words in msg, msg
  if line is not None:
    assert f", line {line}:" in msg, msg


def test_good_files_of_every_format_load(tmp_path):
  """The baseline each case spoils is itself valid (so each case fails for its own reason)."""
  for fmt, (folder_name, good, load) in FORMATS.items():
    root = tmp_path / fmt
    _write_folder(str(root / folder_name), good)
    load(str(root))


def test_missing_files_are_also_file_not_found_errors(tmp_path):
  """A missing file stays catchable as FileNotFoundError, and the launcher reports it in one line."""
  with pytest.raises(FileNotFoundError) as err:
    readers.read_sasrec(str(tmp_path / "Video.txt"))
  assert isinstance(err.value, RecsysError)


# --- filters and splits that leave nothing -----------------------------------------------------

def _ml100k_config(tmp_path, inter: str, **overrides):
  _write_folder(str(tmp_path / "ml-100k"), {"ml-100k.inter": inter})
  config = lae_configs.get_config("ease_ml-100k_strong")
  config.data_dir = str(tmp_path)
  config.update(overrides)
  return config, str(tmp_path / "ml-100k" / "ml-100k.inter")


def _rows(num_users: int, num_items: int, rating: int) -> str:
  return H + "".join(f"{u}\t{i}\t{rating}\t{u * 100 + i}\n" for u in range(1, num_users + 1)
                     for i in range(1, num_items + 1))


def test_rating_threshold_that_keeps_nothing_names_file_and_threshold(tmp_path):
  config, path = _ml100k_config(tmp_path, _rows(4, 6, rating=3))
  with pytest.raises(DataError) as err:
    lae_run.load_split(config)
  assert str(err.value) == (f"ml-100k: no interaction of {path} passes min_rating=4 (its ratings "
                            "range from 3 to 3); lower config.min_rating")


def test_k_core_that_keeps_no_user_names_file(tmp_path):
  config, path = _ml100k_config(tmp_path, _rows(4, 3, rating=5))
  with pytest.raises(DataError, match=f"no user of {path} is left by the k-core filter.*"
                                      "config.min_user_interactions"):
    lae_run.load_split(config)


def test_too_few_users_for_the_held_out_sets_names_file_and_fix(tmp_path):
  config, path = _ml100k_config(tmp_path, _rows(5, 6, rating=5))
  with pytest.raises(DataError, match=f"5 users \\(after filtering {path}\\) cannot give "
                                      "num_heldout_users=100.*below 3"):
    lae_run.load_split(config)
  config.heldout_users = 2
  assert lae_run.load_split(config).test.num_users == 2
  config.heldout_users = 0
  with pytest.raises(RecsysError, match="config.heldout_users"):
    lae_run.load_split(config)


# --- the embeddings cache: never a partial or a non-finite entry ----------------------------

def test_cache_never_stores_nan_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
  root = str(tmp_path)
  emb = np.ones((3, 2), np.float32)
  emb[1, 0] = np.nan
  with pytest.raises(RecsysError, match="NaN/inf.*not cached"):
    cache.save(root, "ds", "x", "k1", emb, {})
  assert not os.path.exists(os.path.join(root, "ds")) or not os.listdir(os.path.join(root, "ds"))

  whole = _npy(np.ones((30, 4), np.float32))

  def half_save(f, array):  # a disk that fills up halfway through the matrix
    del array
    f.write(whole[:100])
    raise OSError("No space left on device")
  monkeypatch.setattr(np, "save", half_save)
  with pytest.raises(OSError, match="No space"):
    cache.save(root, "ds", "x", "k2", np.ones((30, 4), np.float32), {})
  monkeypatch.undo()
  assert os.listdir(os.path.join(root, "ds")) == []  # no .npy, no temp file
  assert cache.load(root, "ds", "x", "k2") is None


def test_cache_treats_damaged_or_non_finite_entries_as_misses(tmp_path):
  root = str(tmp_path)
  npy = cache.save(root, "ds", "x", "k", np.ones((30, 4), np.float32), {})
  assert cache.load(root, "ds", "x", "k") is not None
  good = open(npy, "rb").read()
  with open(npy, "wb") as f:  # truncated by a crash of some other writer
    f.write(good[:200])
  assert cache.load(root, "ds", "x", "k") is None
  with open(npy, "wb") as f:
    f.write(_npy(np.full((30, 4), np.nan, np.float32)))
  assert cache.load(root, "ds", "x", "k") is None
  with open(npy, "wb") as f:
    f.write(good)
  with open(npy[:-len(".npy")] + ".json", "w") as f:
    f.write("[1, 2]")
  assert cache.load(root, "ds", "x", "k") is None


# --- end to end: the launcher -------------------------------------------------------------------

def test_launcher_reports_garbage_data_in_one_line_and_writes_no_metrics(tmp_path):
  data = tmp_path / "data"
  _write_folder(str(data / "ml-100k"), {"ml-100k.inter": H.encode() + GARBAGE})
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "launch.py", "--config=configs/lae.py:ease_ml-100k_strong",
       f"--config.data_dir={data}", f"--workdir={workdir}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
  assert errors == [f"error: {data}/ml-100k/ml-100k.inter, line 2: byte 0x80 is not utf-8 text "
                    "(a binary or compressed file?); give the plain-text file"], result.stderr
  assert "Traceback" not in result.stderr
  assert not (workdir / "metrics.json").exists()
