"""Parsing helpers shared by the readers: lines, columns, numbers, dense ids, Dataset assembly.

Every error is a one-line `DataError` naming the file, the 1-based line and what is wrong.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import itertools
import os
import zlib
from typing import Mapping, Optional, Sequence

import numpy as np

from recsys_core.dataset import DataError, Dataset
from recsys_core.errors import MissingFileError


@contextlib.contextmanager
def gc_paused():
  """Pause the cyclic garbage collector (usable as a decorator: `@gc_paused()`)."""
  # Parsing allocates millions of small lists and strings, none in cycles; the collector would
  # rescan them over and over (3-4x the parse time of ml-1m).
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()


def missing_file(path: str) -> DataError:
  folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return MissingFileError(f"{path}: no such file; set --config.data_dir to the folder holding {folder}/ "
                   "(see ../shared/data/README.md)")


def line_error(path: str, lineno: int, what: str) -> DataError:
  return DataError(f"{path}, line {int(lineno)}: {what}")


def read_text(path: str, encoding: str = "utf-8") -> str:
  """The whole text of a file (.gz decompressed); a missing, unreadable, truncated .gz, binary or
  wrongly encoded file raises a DataError naming it (and the line of the first bad byte)."""
  if not os.path.isfile(path):
    raise missing_file(path)
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        data = f.read()
    else:
      with open(path, "rb") as f:
        data = f.read()
  except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
    raise DataError(f"{path}: unreadable ({e}); a truncated or damaged download? fetch it again"
                    ) from None
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    raise line_error(path, data.count(b"\n", 0, e.start) + 1,
                     f"byte 0x{data[e.start]:02x} is not {encoding} text (a binary or compressed "
                     "file?); give the plain-text file") from None
  # A NUL never occurs in the text formats; valid UTF-8 with one is still a binary file.
  nul = text.find("\0")
  if nul >= 0:
    raise line_error(path, text.count("\n", 0, nul) + 1, "NUL byte: a binary file, not text; give "
                     "the plain-text file")
  return text[1:] if text.startswith("\ufeff") else text  # a BOM would glue onto the first id


def read_lines(path: str, encoding: str = "utf-8") -> tuple[list[str], np.ndarray]:
  """Non-blank lines of a text file (.gz read transparently; errors as `read_text`).

  Returns:
    lines: the lines without their line break ("\\r\\n" accepted);
    linenos: [len(lines)] int64 1-based line number of each in the file.
  """
  text = read_text(path, encoding).replace("\r\n", "\n")
  # split("\n"), not splitlines(): the latter also breaks at \x85, \x1c.. inside latin-1 titles.
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  if "" in lines or any(map(str.isspace, lines)):
    keep = [k for k, ln in enumerate(lines) if ln.strip()]
    lines, linenos = [lines[k] for k in keep], np.array(keep, np.int64) + 1
  else:
    linenos = np.arange(1, len(lines) + 1, dtype=np.int64)
  if not lines:
    raise DataError(f"{path}: empty file (no non-blank line); a failed download or copy? restore "
                    "it")
  return lines, linenos


def split_columns(path: str, lines: Sequence[str], linenos: np.ndarray, num_columns: int,
                  sep: str = "\t") -> list[list[str]]:
  """`num_columns` columns (lists of str) of `sep`-separated lines; a line with another count of
  columns raises naming it."""
  counts = np.fromiter(map(str.count, lines, itertools.repeat(sep)), np.int64, len(lines)) + 1
  bad = np.flatnonzero(counts != num_columns)
  if len(bad):
    k = bad[0]
    raise line_error(path, linenos[k], f"{counts[k]} {sep!r}-separated columns, expected "
                     f"{num_columns}")
  flat = sep.join(lines).split(sep)
  return [flat[j::num_columns] for j in range(num_columns)]


def numbers(tokens: Sequence[str], dtype, path: str, linenos: np.ndarray, what: str) -> np.ndarray:
  """[len(tokens)] array of `dtype`; a bad token (also "nan", "inf") raises naming its line
  (`linenos[k]`)."""
  try:
    values = np.array(tokens, dtype=dtype)
  except (ValueError, OverflowError):
    for k, tok in enumerate(tokens):
      try:
        np.array(tok, dtype=dtype)
      except (ValueError, OverflowError):
        raise line_error(path, linenos[k], f"{what} {tok!r} is not a number") from None
    raise DataError(f"{path}: the {what} column is not numeric") from None
  if values.dtype.kind == "f":
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
      raise line_error(path, linenos[bad[0]], f"{what} {tokens[bad[0]]!r} is not a finite number")
  return values


def check_ids(path: str, tokens: Sequence[str], linenos: np.ndarray, what: str,
              minimum: Optional[int] = None) -> None:
  """Raise naming the line of the first empty id (str tokens) or id below `minimum` (ints)."""
  if minimum is not None:
    bad = np.flatnonzero(np.asarray(tokens) < minimum)
    if len(bad):
      raise line_error(path, linenos[bad[0]], f"{what} {tokens[bad[0]]} is out of range (ids "
                       f"start at {minimum})")
  elif "" in tokens:
    k = list(tokens).index("")
    raise line_error(path, linenos[k], f"empty {what}")


def index_ids(raw) -> tuple[np.ndarray, np.ndarray]:
  """Dense ids in sorted raw-id order: numeric if every raw id is a canonical integer ("7", not
  "007"), else lexicographic.

  Args:
    raw: [n] raw ids (list or array of str, or integer array; repeats allowed).
  Returns:
    ids: [k] str, the distinct raw ids, index = dense id; codes: [n] int32 dense id of each.
  """
  ints = None
  if isinstance(raw, np.ndarray) and raw.dtype.kind in "iu":
    ints = raw
  else:
    try:
      ints = np.array(raw, dtype=np.int64)
    except (ValueError, OverflowError, TypeError):
      pass
  if ints is not None:
    uniq, codes = np.unique(ints, return_inverse=True)
    ids, codes = uniq.astype(str), codes.reshape(-1)
    # A non-canonical spelling ("07", "+7", " 7") is longer than str(int): equal total length
    # means every raw id is canonical, so no two distinct raw ids were merged into one.
    if ints is raw or sum(map(len, raw)) == np.char.str_len(ids)[codes].sum():
      return ids, codes.astype(np.int32)
  uniq, codes = np.unique(np.asarray(raw, dtype=str), return_inverse=True)
  return uniq, codes.reshape(-1).astype(np.int32)


def assemble(name: str, user_ids: np.ndarray, users: np.ndarray, item_ids: np.ndarray,
             items: np.ndarray, timestamps: Optional[np.ndarray] = None,
             ratings: Optional[np.ndarray] = None,
             item_text: Optional[Mapping[str, Mapping[str, Optional[str]]]] = None,
             source: str = "") -> Dataset:
  """A `Dataset` from interactions in file order (read from the file `source`).

  Args:
    user_ids, item_ids: [num_users], [num_items] raw ids (str), index = dense id.
    users, items: [n] int dense ids of each interaction, in file order.
    timestamps: [n] float64 or None; each user's interactions are stably sorted by it.
    ratings: [n] float32 or None.
    item_text: field -> {raw item id -> text}; aligned to `item_ids` (None where missing).
  """
  users = np.asarray(users, np.int64)
  if timestamps is None:
    order = np.argsort(users, kind="stable")
  else:
    order = np.lexsort((timestamps, users))  # lexsort is stable: ties keep file order
  counts = np.bincount(users, minlength=len(user_ids))
  text = {field: [m.get(i) for i in item_ids] for field, m in (item_text or {}).items()}
  return Dataset(
      name=name, user_ids=np.asarray(user_ids, str), item_ids=np.asarray(item_ids, str),
      indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
      items=np.asarray(items, np.int32)[order],
      timestamps=None if timestamps is None else np.asarray(timestamps, np.float64)[order],
      ratings=None if ratings is None else np.asarray(ratings, np.float32)[order],
      item_text=text, source=source)


def pairs_dataset(name: str, users_raw, items_raw, timestamps=None, ratings=None,
                  item_text=None, source: str = "") -> Dataset:
  """`assemble` from raw (user, item) ids of each interaction, indexed with `index_ids`."""
  user_ids, users = index_ids(users_raw)
  item_ids, items = index_ids(items_raw)
  return assemble(name, user_ids, users, item_ids, items, timestamps, ratings, item_text, source)
