"""The authors' two GRAM file formats, read into and written from a Dataset's dense item order.

ID file (`item_generative_indexing_*.txt`): one line per item, `ASIN |tok|tok|...`: the item id,
one space, then every level's token preceded by "|" (T5 pieces such as `▁loss`, `ren`; a numeric
collision suffix is one more level). The tokens hold neither "|" nor whitespace.

Neighbour file (`similar_item_sasrec.txt`): an optional header `anchor top1 top2 ...`, then one
line per item: `anchor n1 n2 ...`, space-separated item ids, most similar first (the authors': 20
per item).

Both must cover exactly the dataset's items: an unknown item, a missing item, a repeated item or a
malformed line raises a one-line DataError naming the file and line.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from recsys_core import records
from recsys_core.dataset import DataError
from recsys_core.parsing import line_error, read_lines


def _item_index(item_ids: Sequence[str]) -> dict[str, int]:
  return {str(a): i for i, a in enumerate(item_ids)}


def _check_covered(path: str, item_ids: Sequence[str], line_of: np.ndarray) -> None:
  missing = np.flatnonzero(line_of < 0)
  if len(missing):
    raise DataError(f"{path}: {len(missing)} item(s) of the dataset have no line, e.g. "
                    f"{item_ids[missing[0]]!r}; the file must list every item")


def _write_lines(path: str, lines: Sequence[str]) -> None:
  text = "".join(line + "\n" for line in lines).encode("utf-8")
  records.write_atomic(path, lambda f: f.write(text))


def _check_word(word: str) -> bool:
  return bool(word) and "|" not in word and not any(ch.isspace() for ch in word)


# --- lexical IDs --------------------------------------------------------------------------------

def read_id_file(path: str, item_ids: Sequence[str]) -> list[tuple[str, ...]]:
  """[num_items] lexical ID (tuple of token strings) of every dense item of `item_ids`.

  Raises DataError for a malformed line, an item not in `item_ids`, an item listed twice, an
  item without a line, or two items with the same ID (decoding could not tell them apart).
  """
  index = _item_index(item_ids)
  lines, linenos = read_lines(path)
  ids: list[Optional[tuple[str, ...]]] = [None] * len(index)
  line_of = np.full(len(index), -1, np.int64)
  owner: dict[tuple[str, ...], int] = {}
  for line, k in zip(lines, linenos):
    item, sep, rest = line.rstrip().partition(" ")
    if not sep or not rest.startswith("|"):
      raise line_error(path, k, "expected 'ITEM |tok|tok|...' (item id, a space, '|'-led tokens)")
    words = tuple(rest[1:].split("|"))
    if not all(map(_check_word, words)):
      raise line_error(path, k, f"empty token or whitespace inside a token in {rest!r}")
    i = index.get(item, -1)
    if i < 0:
      raise line_error(path, k, f"item {item!r} is not in the dataset")
    if line_of[i] >= 0:
      raise line_error(path, k, f"item {item!r} already has line {line_of[i]}")
    if words in owner:
      j = owner[words]
      raise line_error(path, k, f"item {item!r} has the same ID as {item_ids[j]!r} (line "
                       f"{line_of[j]}); IDs must be unique")
    ids[i], line_of[i], owner[words] = words, k, i
  _check_covered(path, item_ids, line_of)
  return ids  # type: ignore[return-value]


def authors_id_path(folder: str) -> str:
  """The authors' ID file in a dataset folder (`item_generative_indexing_*.txt`, exactly one)."""
  names = sorted(f for f in os.listdir(folder) if f.startswith("item_generative_indexing_")
                 and f.endswith(".txt")) if os.path.isdir(folder) else []
  if len(names) != 1:
    fix = ("keep only one" if names else "set --config.data_dir to the folder holding "
           f"{os.path.basename(os.path.normpath(folder))}/, or config.ids.source='ours'")
    raise DataError(f"{folder}: expected one item_generative_indexing_*.txt (the GRAM authors' "
                    f"IDs), found {len(names)}; {fix}")
  return os.path.join(folder, names[0])


def format_id(words: Sequence[str]) -> str:
  """`|tok|tok|...`, the string form of a lexical ID in the authors' files."""
  return "".join("|" + w for w in words)


def write_id_file(path: str, item_ids: Sequence[str], ids: Sequence[Sequence[str]]) -> None:
  """Write `ITEM |tok|...` lines in dense item order (atomically)."""
  if len(ids) != len(item_ids):
    raise ValueError(f"{len(ids)} IDs for {len(item_ids)} items")
  for item, words in zip(item_ids, ids):
    if not words or not all(map(_check_word, words)):
      raise ValueError(f"item {item!r}: ID {tuple(words)!r} is empty or has a token with '|' or "
                       "whitespace")
  _write_lines(path, [f"{item} {format_id(words)}" for item, words in zip(item_ids, ids)])


# --- collaborative neighbours -------------------------------------------------------------------

def read_neighbour_file(path: str, item_ids: Sequence[str], k: Optional[int] = None
                        ) -> np.ndarray:
  """[num_items, k] int32 dense ids of every item's first k neighbours (k=None: as many as the
  first line has; every line must have at least k)."""
  index = _item_index(item_ids)
  lines, linenos = read_lines(path)
  if lines[0].split()[:1] == ["anchor"]:
    lines, linenos = lines[1:], linenos[1:]
  if not lines:
    raise DataError(f"{path}: no neighbour lines after the header")
  if k is None:
    k = len(lines[0].split()) - 1
  if k < 1:
    raise line_error(path, linenos[0], "expected 'ITEM NEIGHBOUR ...' with at least one neighbour")
  out = np.zeros((len(index), k), np.int32)
  line_of = np.full(len(index), -1, np.int64)
  for line, lineno in zip(lines, linenos):
    fields = line.split()
    if len(fields) < k + 1:
      raise line_error(path, lineno, f"{len(fields) - 1} neighbours, expected at least {k} "
                       "(lower config.num_neighbours)")
    dense = [index.get(a, -1) for a in fields[:k + 1]]
    if min(dense) < 0:
      bad = fields[dense.index(-1)]
      raise line_error(path, lineno, f"item {bad!r} is not in the dataset")
    if line_of[dense[0]] >= 0:
      raise line_error(path, lineno, f"item {fields[0]!r} already has line {line_of[dense[0]]}")
    out[dense[0]] = dense[1:]
    line_of[dense[0]] = lineno
  _check_covered(path, item_ids, line_of)
  return out


def write_neighbour_file(path: str, item_ids: Sequence[str], neighbours: np.ndarray) -> None:
  """Write the authors' format: header `anchor top1 .. topk`, then `ITEM n1 .. nk` per item."""
  neighbours = np.asarray(neighbours)
  if neighbours.ndim != 2 or len(neighbours) != len(item_ids):
    raise ValueError(f"neighbours must be [{len(item_ids)}, k], got {neighbours.shape}")
  header = "anchor " + " ".join(f"top{j + 1}" for j in range(neighbours.shape[1]))
  rows = [" ".join([item_ids[i]] + [item_ids[j] for j in neighbours[i]])
          for i in range(len(item_ids))]
  _write_lines(path, [header] + rows)
