"""Readers: one per on-disk format, each returning a `Dataset`; `load_dataset` dispatches on a name.

Id convention of every reader: dense ids follow the SORTED order of the raw ids, numeric when every
raw id of that kind is an integer (so "2" < "10"; LightGCN ids 0..n-1 map to themselves),
lexicographic otherwise (Amazon ASINs); it does not depend on the row order of the file.
Exception: gowalla_strong keeps its given columns (unique_sid.txt order) and appends its held-out
users after the training users in file order (see `read_strong_folder`). A user's interactions
are chronological: stably sorted by timestamp where the format has one, in file order where not
(`timestamps` is then None).

Errors are one-line `DataError`s naming the file, the 1-based line and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from recsys_core import distributed
from recsys_core import synthetic
from recsys_core.dataset import DataError, Dataset, EvalSet, Split, binary_matrix, ordered_row_items
from recsys_core.parsing import (assemble, check_ids, gc_paused, index_ids, line_error, numbers,
                                 pairs_dataset, read_lines, split_columns)

# Standard item-text field names across formats (other fields keep their own names).
_TEXT_FIELDS = {"movie_title": "title", "name": "title", "item_name": "title",
                "release_year": "year", "class": "genres", "genre": "genres"}

Text = dict[str, dict[str, Optional[str]]]  # field -> {raw item id -> text or None}


def _stem(path: str) -> str:
  return os.path.basename(path).split(".")[0]


def _text_value(v) -> Optional[str]:
  if v is None or v == "" or v == []:
    return None
  if isinstance(v, (list, tuple)):
    return ", ".join(str(x) for x in v)
  if isinstance(v, float) and v.is_integer():
    return str(int(v))
  return str(v)


# --- tables with a header: RecBole atomic files, the ML-1M tsv ---------------------------------

class _Table(NamedTuple):
  path: str
  columns: dict[str, list[str]]  # column name -> values of the data rows
  types: dict[str, str]  # column name -> RecBole type ("token", "float", ...; "" if untyped)
  linenos: np.ndarray  # [rows] int64 line number of each data row
  header_line: int

  def get(self, name: str) -> list[str]:
    if name not in self.columns:
      raise line_error(self.path, self.header_line, f"the header lacks a {name!r} column (has "
                       f"{', '.join(self.columns)})")
    return self.columns[name]

  def numbers(self, name: str, dtype) -> np.ndarray:
    return numbers(self.get(name), dtype, self.path, self.linenos, name)

  def ids(self, name: str) -> list[str]:
    """The raw ids of a column; an empty one raises naming its line."""
    check_ids(self.path, self.get(name), self.linenos, name)
    return self.columns[name]


@gc_paused()
def _read_table(path: str, typed: bool) -> _Table:
  """A tab-separated file with a header line (RecBole's `name:type` fields if `typed`)."""
  lines, linenos = read_lines(path)
  names, types = [], []
  for field in lines[0].split("\t"):
    name, _, typ = field.strip().partition(":")
    if typed and not typ:
      raise line_error(path, linenos[0], f"header field {field!r} lacks its ':type'")
    if not name or name in names:
      raise line_error(path, linenos[0], f"header field {field!r} is empty or repeated; name each "
                       "column once")
    names.append(name)
    types.append(typ)
  if len(lines) == 1:
    raise DataError(f"{path}: header only, no data rows")
  columns = split_columns(path, lines[1:], linenos[1:], len(names))
  return _Table(path, dict(zip(names, columns)), dict(zip(names, types)), linenos[1:],
                int(linenos[0]))


def read_recbole_items(path: str) -> Text:
  """Item text of a RecBole `.item` file, fields renamed to the standard ones (movie_title, name
  -> "title"; release_year -> "year"; class -> "genres", its token_seq joined with ", ")."""
  table = _read_table(path, typed=True)
  ids = table.ids("item_id")
  if len(set(ids)) != len(ids):
    seen = set()
    for item, k in zip(ids, table.linenos):
      if item in seen:
        raise line_error(path, k, f"item {item!r} listed twice")
      seen.add(item)
  text = {}
  for name, values in table.columns.items():
    field = _TEXT_FIELDS.get(name, name)
    if name == "item_id":
      continue
    if field == "genres" and table.types[name] == "token_seq":
      values = [", ".join(v.split()) for v in values]
    text[field] = {i: (v.strip() or None) for i, v in zip(ids, values)}
  return text


def read_recbole(path: str, item_path: Optional[str] = None, name: str = "") -> Dataset:
  """RecBole atomic `.inter` (+ optional `.item`): columns user_id, item_id[, rating][, timestamp].

  Only a column named "rating" becomes `ratings` (lastfm's listen-count "weight" does not).
  Repeated rows are kept. Items of the `.item` file without interactions are left out.
  """
  table = _read_table(path, typed=True)
  ts = table.numbers("timestamp", np.float64) if "timestamp" in table.columns else None
  ratings = table.numbers("rating", np.float32) if "rating" in table.columns else None
  text = read_recbole_items(item_path) if item_path else None
  return pairs_dataset(name or _stem(path), table.ids("user_id"), table.ids("item_id"), ts,
                       ratings, text, source=path)


_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


@gc_paused()
def read_movies_dat(path: str) -> Text:
  """GroupLens `movies.dat` (`id::Title (year)::Genre|Genre`, latin-1) -> title, year, genres."""
  lines, linenos = read_lines(path, encoding="latin-1")
  ids, titles, genres = split_columns(path, lines, linenos, 3, sep="::")
  text: Text = {"title": {}, "year": {}, "genres": {}}
  check_ids(path, ids, linenos, "movie id")
  for mid, title, genre, k in zip(ids, titles, genres, linenos):
    if mid in text["title"]:
      raise line_error(path, k, f"movie {mid!r} listed twice")
    m = _YEAR.match(title.strip())
    text["title"][mid] = m.group(1) if m else title.strip()
    text["year"][mid] = m.group(2) if m else None
    text["genres"][mid] = ", ".join(g for g in genre.strip().split("|") if g) or None
  return text


def read_ml1m(path: str, movies_path: Optional[str] = None, name: str = "ml-1m") -> Dataset:
  """`ml1m_interactions.tsv.gz` (header user_id, movie_id, timestamp, ts_source) (+ movies.dat).
  Has no rating values."""
  table = _read_table(path, typed=False)
  text = read_movies_dat(movies_path) if movies_path else None
  return pairs_dataset(name, table.ids("user_id"), table.ids("movie_id"),
                       table.numbers("timestamp", np.float64), item_text=text, source=path)


# --- one user per line (LightGCN, Amazon user_sequence) and SASRec pairs ----------------------

class _UserLines(NamedTuple):
  users: np.ndarray  # [L] raw user id of each line (int64 or str)
  counts: np.ndarray  # [L] int64 number of items on each line
  items: np.ndarray  # [nnz] raw item ids, line after line (int64 or str)
  item_lines: np.ndarray  # [nnz] int64 line number of each item
  user_lines: np.ndarray  # [L] int64 line number of each user


@gc_paused()
def _read_user_lines(path: str, numeric: bool) -> _UserLines:
  """Parse `u i1 i2 ...` lines; ids are int64 if `numeric` else str. A user may not repeat."""
  lines, user_lines = read_lines(path)
  rows = [ln.split() for ln in lines]
  users = [r[0] for r in rows]
  counts = np.fromiter((len(r) - 1 for r in rows), np.int64, len(rows))
  items = [i for r in rows for i in r[1:]]
  item_lines = np.repeat(user_lines, counts)
  if numeric:  # LightGCN ids are 0-based
    users = numbers(users, np.int64, path, user_lines, "user id")
    items = numbers(items, np.int64, path, item_lines, "item id")
    check_ids(path, users, user_lines, "user id", minimum=0)
    check_ids(path, items, item_lines, "item id", minimum=0)
  else:
    users, items = np.array(users, str), np.array(items, str)
  _, first, inverse = np.unique(users, return_index=True, return_inverse=True)
  first_line = first[inverse.reshape(-1)]
  again = np.flatnonzero(first_line != np.arange(len(users)))
  if len(again):
    k = again[0]
    raise line_error(path, user_lines[k], f"user {users[k]} already has line "
                     f"{user_lines[first_line[k]]}")
  return _UserLines(users, counts, items, item_lines, user_lines)


def _user_lines_dataset(name: str, p: _UserLines, item_text: Optional[Text] = None,
                        source: str = "") -> Dataset:
  user_ids, user_codes = index_ids(p.users)
  item_ids, item_codes = index_ids(p.items)
  return assemble(name, user_ids, np.repeat(user_codes, p.counts), item_ids, item_codes,
                  item_text=item_text, source=source)


def read_lightgcn(path: str, name: str = "") -> Dataset:
  """LightGCN `u i1 i2 ...` per line, integer ids, file order = chronological. A line may hold a
  user with no items: that user is kept, with an empty sequence."""
  return _user_lines_dataset(name or _stem(path), _read_user_lines(path, numeric=True),
                             source=path)


@gc_paused()
def read_sasrec(path: str, name: str = "") -> Dataset:
  """SASRec `u i` integer pairs per line, chronological per user (users need not be grouped).
  Ids start at 1 (SASRec's item 0 is its padding)."""
  lines, linenos = read_lines(path)
  users, items = split_columns(path, [" ".join(ln.split()) for ln in lines], linenos, 2, sep=" ")
  users = numbers(users, np.int64, path, linenos, "user id")
  items = numbers(items, np.int64, path, linenos, "item id")
  check_ids(path, users, linenos, "user id", minimum=1)
  check_ids(path, items, linenos, "item id", minimum=1)
  return pairs_dataset(name or _stem(path), users, items, source=path)


def read_jsonl_items(path: str) -> Text:
  """Item text of an `items.jsonl` (one object with a string "asin" per line): field -> {asin ->
  text}; lists (categories) joined with ", ", integral floats without ".0"."""
  text: Text = {}
  seen = set()
  lines, linenos = read_lines(path)
  for ln, k in zip(lines, linenos):
    try:
      obj = json.loads(ln)
    except json.JSONDecodeError as e:
      raise line_error(path, k, f"bad JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("asin"), str):
      raise line_error(path, k, "expected a JSON object with a string 'asin'")
    asin = obj["asin"]
    if asin in seen:
      raise line_error(path, k, f"item {asin!r} listed twice")
    seen.add(asin)
    for key, v in obj.items():
      if key != "asin":
        text.setdefault(_TEXT_FIELDS.get(key, key), {})[asin] = _text_value(v)
  return text


def read_user_sequences(path: str, items_path: Optional[str] = None, name: str = "") -> Dataset:
  """`user_asin item_asin ...` per line, chronological (+ optional `items.jsonl` item text)."""
  text = read_jsonl_items(items_path) if items_path else None
  return _user_lines_dataset(name or _stem(path), _read_user_lines(path, numeric=False), text,
                             source=path)


# --- the two pre-split Gowalla folders ---------------------------------------------------------

def _column_lines(path: str, num_items: int, p: Optional[_UserLines] = None) -> _UserLines:
  """LightGCN lines whose item ids are column indices 0..num_items-1 (`p`: the file, parsed)."""
  p = _read_user_lines(path, numeric=True) if p is None else p
  bad = np.flatnonzero((p.items < 0) | (p.items >= num_items))
  if len(bad):
    raise line_error(path, p.item_lines[bad[0]],
                     f"item {p.items[bad[0]]} outside 0..{num_items - 1} (see unique_sid.txt)")
  return p


def _heldout(folder: str, prefix: str, num_items: int, parsed: Optional[dict] = None):
  """Rows of `<prefix>_in.txt` / `<prefix>.txt`, aligned line by line on the user id.

  Returns (raw user ids "<prefix>:<u>", EvalSet, [nnz] row of each item, [nnz] items) with a
  user's fold-in items before its target items; the EvalSet's target_order keeps the file order.
  """
  path_in, path_tg = (os.path.join(folder, f) for f in (f"{prefix}_in.txt", f"{prefix}.txt"))
  parsed = parsed or {}
  p_in, p_tg = (_column_lines(path, num_items, parsed.get(path)) for path in (path_in, path_tg))
  m = min(len(p_in.users), len(p_tg.users))
  diff = np.flatnonzero(p_in.users[:m] != p_tg.users[:m])
  if len(diff) or len(p_in.users) != len(p_tg.users):
    k = int(diff[0]) if len(diff) else m
    path, lines = (path_tg, p_tg.user_lines) if k < len(p_tg.users) else (path_in, p_in.user_lines)
    raise line_error(path, lines[k], f"user rows of {os.path.basename(path_in)} and "
                     f"{os.path.basename(path_tg)} do not line up (row {k + 1})")
  num = len(p_in.users)
  in_rows, tg_rows = np.repeat(np.arange(num), p_in.counts), np.repeat(np.arange(num), p_tg.counts)
  evalset = EvalSet(fold_in=binary_matrix(in_rows, p_in.items, num, num_items),
                    target=binary_matrix(tg_rows, p_tg.items, num, num_items),
                    target_order=ordered_row_items(tg_rows, p_tg.items, num_items))
  if evalset.target.nnz == 0:
    raise DataError(f"{path_tg}: empty split: no {prefix} user has a target item; give each "
                    "held-out user its items to predict")
  return ([f"{prefix}:{u}" for u in p_in.users], evalset, np.concatenate([in_rows, tg_rows]),
          np.concatenate([p_in.items, p_tg.items]))


def _item_list(path: str) -> np.ndarray:
  """[num_items] str: one item id per line (line j = column j), none twice."""
  lines, linenos = read_lines(path)
  line_of: dict[str, int] = {}
  for ln, k in zip(lines, linenos):
    item = ln.strip()
    if len(item.split()) != 1:
      raise line_error(path, k, f"expected one item id, got {item!r}")
    if item in line_of:
      raise line_error(path, k, f"item {item!r} already on line {line_of[item]}")
    line_of[item] = int(k)
  return np.array(list(line_of))


STRONG_FILES = ("train.txt", "valid_in.txt", "valid.txt", "test_in.txt", "test.txt")


def read_strong_folder(folder: str, name: str = "gowalla_strong",
                       item_list_required: bool = True) -> tuple[Dataset, Split]:
  """VAE-CF strong-generalisation folder (STRONG_FILES, the official RDLAE release's format), its
  split preserved exactly.

  Dense item j = column j (raw id: line j of unique_sid.txt). Without unique_sid.txt (allowed
  unless `item_list_required`) the columns are 0..max item id of the five files, raw id = column,
  as the official loader counts them. Dataset users: the train.txt users (sorted ids; =
  Split.train rows), then "valid:<id>" users in valid_in.txt order (= Split.valid rows), then
  "test:<id>" users in test_in.txt order (= Split.test rows). No timestamps: a training user's
  sequence is in file order, a held-out user's is fold-in then target.
  """
  sid = os.path.join(folder, "unique_sid.txt")
  parsed = {}
  if item_list_required or os.path.isfile(sid):
    item_ids = _item_list(sid)
  else:
    parsed = {path: _read_user_lines(path, numeric=True)
              for path in (os.path.join(folder, f) for f in STRONG_FILES)}
    item_ids = np.arange(1 + max(int(p.items.max(initial=-1)) for p in parsed.values())).astype(str)
  n = len(item_ids)
  train_path = os.path.join(folder, "train.txt")
  p = _column_lines(train_path, n, parsed.get(train_path))
  train_ids, train_codes = index_ids(p.users)
  train_rows = np.repeat(train_codes, p.counts)
  valid_ids, valid, valid_rows, valid_items = _heldout(folder, "valid", n, parsed)
  test_ids, test, test_rows, test_items = _heldout(folder, "test", n, parsed)
  offset = len(train_ids)
  ds = assemble(name, np.concatenate([train_ids, valid_ids, test_ids]),
                np.concatenate([train_rows, valid_rows + offset,
                                test_rows + offset + len(valid_ids)]),
                item_ids, np.concatenate([p.items, valid_items, test_items]))
  train = binary_matrix(train_rows, p.items, len(train_ids), n)
  return ds, Split(train=train, valid=valid, test=test, protocol="strong")


def read_weak_folder(folder: str, name: str = "gowalla_weak") -> tuple[Dataset, Split]:
  """LightGCN weak-generalisation folder (train.txt, test.txt), its split preserved exactly.

  Dataset users/items: the union of both files, sorted ids; a user's sequence is its train items
  then its test items. Split.train rows = Dataset users; test = EvalSet(fold_in=train, target=test).
  """
  tr, te = (_read_user_lines(os.path.join(folder, f), numeric=True)
            for f in ("train.txt", "test.txt"))
  user_ids, user_codes = index_ids(np.concatenate([tr.users, te.users]))
  item_ids, item_codes = index_ids(np.concatenate([tr.items, te.items]))
  shape = (len(user_ids), len(item_ids))
  train_rows = np.repeat(user_codes[:len(tr.users)], tr.counts)
  test_rows = np.repeat(user_codes[len(tr.users):], te.counts)
  train = binary_matrix(train_rows, item_codes[:len(tr.items)], *shape)
  target = binary_matrix(test_rows, item_codes[len(tr.items):], *shape)
  target_order = ordered_row_items(test_rows, item_codes[len(tr.items):], shape[1])
  if target.nnz == 0:
    raise DataError(f"{os.path.join(folder, 'test.txt')}: empty split: no user has a test item")
  ds = assemble(name, user_ids, np.concatenate([train_rows, test_rows]), item_ids, item_codes)
  return ds, Split(train=train, test=EvalSet(fold_in=train, target=target, target_order=target_order),
                   protocol="weak")


# --- dispatch by folder name -------------------------------------------------------------------

def _optional(path: str) -> Optional[str]:
  return path if os.path.isfile(path) else None


def _amazon(name: str) -> Callable[[str], Dataset]:
  return lambda d: read_user_sequences(os.path.join(d, "user_sequence.txt"),
                                       _optional(os.path.join(d, "items.jsonl")), name)


_LOADERS: dict[str, Callable[[str], Dataset]] = {
    "ml-100k": lambda d: read_recbole(os.path.join(d, "ml-100k.inter"),
                                      _optional(os.path.join(d, "ml-100k.item")), "ml-100k"),
    "lastfm": lambda d: read_recbole(os.path.join(d, "lastfm.inter"),
                                     _optional(os.path.join(d, "lastfm.item")), "lastfm"),
    "ml-1m": lambda d: read_ml1m(os.path.join(d, "ml1m_interactions.tsv.gz"),
                                 _optional(os.path.join(d, "movies.dat")), "ml-1m"),
    "amazon_beauty": _amazon("amazon_beauty"),
    "amazon_toys": _amazon("amazon_toys"),
    "amazon_sports": _amazon("amazon_sports"),
    "amazon_video": lambda d: read_sasrec(os.path.join(d, "Video.txt"), "amazon_video"),
    "gowalla_strong": lambda d: read_strong_folder(d, "gowalla_strong")[0],
    "gowalla_weak": lambda d: read_weak_folder(d, "gowalla_weak")[0],
}
_PRESPLIT: dict[str, Callable[[str, str], tuple[Dataset, Split]]] = {
    "gowalla_strong": read_strong_folder, "gowalla_weak": read_weak_folder}
# The RDLAE paper's other datasets, in the files of its official release (jaewan7599/RDLAE_SIGIR2023,
# README "Datasets"; not shipped here): strong generalization as pre-split VAE-CF folders (ML-20M,
# Netflix, MSD preprocessed as VAE-CF does; Yelp2018, Amazon-book from LightGCN's data), weak as
# LightGCN's train.txt / test.txt. Each lives in <data_dir>/<name>/.
for _name in ("ml-20m_strong", "netflix_strong", "msd_strong", "yelp2018_strong", "amazon-book_strong"):
  _PRESPLIT[_name] = lambda d, name: read_strong_folder(d, name, item_list_required=False)
for _name in ("yelp2018_weak", "amazon-book_weak"):
  _PRESPLIT[_name] = read_weak_folder
for _name in _PRESPLIT:
  _LOADERS.setdefault(_name, lambda d, name=_name: _PRESPLIT[name](d, name)[0])
DATASETS = tuple(_LOADERS) + ("synthetic",)


def _folder(name: str, data_dir: str, known: Sequence[str]) -> str:
  if name not in known:
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(known)}")
  folder = os.path.join(data_dir, name)
  if not os.path.isdir(folder):
    raise DataError(f"{folder}: no such folder; set --config.data_dir to the folder holding "
                    f"{name}/")
  return folder


def load_dataset(name: str, data_dir: str) -> Dataset:
  """The Dataset of `<data_dir>/<name>/`; "synthetic" is generated and ignores `data_dir`.

  In a job of several processes every process reads the files itself; a job whose processes read
  different data (another copy of the folder, a file changed in between) is refused.
  """
  if name == "synthetic":
    return synthetic.make_synthetic()
  folder = _folder(name, data_dir, DATASETS)
  ds = _LOADERS[name](folder)
  _check_same_data(folder, ds)
  return ds


def load_presplit(name: str, data_dir: str) -> tuple[Dataset, Split]:
  """(Dataset, Split) of a folder that ships its split: gowalla_strong, gowalla_weak, or one of
  the RDLAE release's other folders (ml-20m_strong, ..., amazon-book_weak)."""
  folder = _folder(name, data_dir, tuple(_PRESPLIT))
  ds, split = _PRESPLIT[name](folder, name)
  _check_same_data(folder, ds)
  return ds, split


def _check_same_data(folder: str, ds: Dataset) -> None:
  distributed.check_same(f"the data read from {folder}", distributed.fingerprint(
      ds.indptr, ds.items, "\n".join(ds.item_ids), "\n".join(ds.user_ids)))
