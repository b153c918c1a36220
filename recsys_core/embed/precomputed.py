"""Item embeddings computed elsewhere (hosted LLMs, other code), aligned to a dataset's items.

A matrix file holds one row per item: `.npy` (a 2-D float array) or `.safetensors` (one tensor, or
the one named by `key`). Without an ids file its rows must be the dataset's items in dense-id
order; with one (a text file, one raw item id per line, line k = row k) rows are matched by raw id,
so the file may list more items than the dataset (extra rows are dropped) but none twice, and every
item of the dataset must be present.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from recsys_core.dataset import DataError
from recsys_core.errors import MissingFileError
from recsys_core.parsing import read_text


def read_matrix(path: str, key: str = "", field: str = "config.precomputed") -> np.ndarray:
  """The array of a .npy / .safetensors file as stored; a missing or unreadable file raises a
  DataError naming it and the config `field` that points at it."""
  if not os.path.isfile(path):
    raise MissingFileError(f"{path}: no such embeddings file ({field})")
  if path.endswith(".npy"):
    with open(path, "rb") as f:
      magic = f.read(6)
    if magic != b"\x93NUMPY":  # else numpy takes any other bytes for a pickle
      raise DataError(f"{path}: not a .npy file (no NUMPY header); write it with numpy.save")
    try:
      return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:  # bad header, truncated, object array
      raise DataError(f"{path}: not a plain .npy array ({e or type(e).__name__}); write it with "
                      "numpy.save") from None
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types on a bad header
      raise DataError(f"{path}: not a readable .safetensors file ({e}); write it with "
                      "safetensors.numpy.save_file") from None
    if key:
      if key not in tensors:
        raise DataError(f"{path}: no tensor {key!r} (config.precomputed_key); it has: "
                        f"{', '.join(sorted(tensors))}")
      return tensors[key]
    if len(tensors) != 1:
      raise DataError(f"{path}: holds {len(tensors)} tensors ({', '.join(sorted(tensors))}); "
                      f"name one with config.precomputed_key")
    return next(iter(tensors.values()))
  raise DataError(f"{path}: unknown embeddings format; use .npy or .safetensors")


def _read_ids(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise MissingFileError(f"{path}: no such ids file (config.precomputed_ids)")
  ids = [line.strip() for line in read_text(path).split("\n")]
  while ids and not ids[-1]:
    ids.pop()
  for k, i in enumerate(ids):
    if not i:
      raise DataError(f"{path}:{k + 1}: empty item id")
  return ids


def load_precomputed(path: str, item_ids: Sequence[str], ids_path: str = "",
                     key: str = "") -> np.ndarray:
  """[len(item_ids), d] float32 rows of the matrix at `path`, row j = dataset item j.

  Args:
    path: .npy or .safetensors matrix [rows, d].
    item_ids: the dataset's raw item ids in dense-id order (`Dataset.item_ids`).
    ids_path: optional text file of the matrix's raw row ids, one per line.
    key: tensor name inside a .safetensors file holding several.
  """
  matrix = read_matrix(path, key)
  if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating) or not matrix.shape[1]:
    raise DataError(f"{path}: expected a 2-D float matrix [items, dim > 0], got shape "
                    f"{matrix.shape} dtype {matrix.dtype}")
  if ids_path:
    ids = _read_ids(ids_path)
    if len(ids) != matrix.shape[0]:
      raise DataError(f"{ids_path}: {len(ids)} ids for the {matrix.shape[0]} rows of {path}")
    row_of = {}
    for k, i in enumerate(ids):
      if i in row_of:
        raise DataError(f"{ids_path}:{k + 1}: item {i!r} already on line {row_of[i] + 1}")
      row_of[i] = k
    missing = [i for i in item_ids if i not in row_of]
    if missing:
      raise DataError(f"{ids_path}: {len(missing)} of the dataset's {len(item_ids)} items have no "
                      f"row, e.g. {missing[0]!r}")
    matrix = matrix[[row_of[i] for i in item_ids]]
  elif matrix.shape[0] != len(item_ids):
    raise DataError(f"{path}: {matrix.shape[0]} rows but the dataset has {len(item_ids)} items; "
                    f"give the rows' item ids (config.precomputed_ids) to align them")
  with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported just below
    matrix = np.asarray(matrix, np.float32)
  bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
  if len(bad):
    raise DataError(f"{path}: {len(bad)} rows with NaN/inf values, first for item "
                    f"{item_ids[bad[0]]!r}")
  return matrix
