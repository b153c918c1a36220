"""The embedding cache: `<cache_dir>/<dataset>/<extractor>-<key>.npy` + `.json` metadata.

The key hashes everything the vectors depend on: the exact item texts (so a changed template, field
choice or data file misses), the model identity (weights package and version, pooling, layer,
normalisation, max length). A hit requires both files, the same key in the metadata and a finite
matrix of the recorded shape; anything else is a miss and is recomputed. Both files are written
atomically, the metadata last, so a run killed mid-write leaves no entry that reads as a hit, and a
matrix with NaN/inf is never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from recsys_core import records
from recsys_core.errors import DivergenceError


def texts_hash(texts: Sequence[str]) -> str:
  """sha256 of the item texts in dense-id order."""
  return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def cache_key(spec: dict[str, Any]) -> str:
  """16 hex digits of the sha256 of `spec` (JSON with sorted keys)."""
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def paths(cache_dir: str, dataset: str, extractor: str, key: str) -> tuple[str, str]:
  stem = os.path.join(cache_dir, dataset, f"{extractor}-{key}")
  return stem + ".npy", stem + ".json"


def load(cache_dir: str, dataset: str, extractor: str, key: str
         ) -> Optional[tuple[np.ndarray, dict[str, Any]]]:
  """(embeddings, metadata) when a valid entry exists, else None."""
  npy, meta_path = paths(cache_dir, dataset, extractor, key)
  if not (os.path.isfile(npy) and os.path.isfile(meta_path)):
    return None
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    emb = np.load(npy, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError, EOFError):
    return None
  if not isinstance(meta, dict) or meta.get("key") != key or list(emb.shape) != meta.get("shape"):
    return None
  emb = np.array(emb, np.float32)  # a copy: the memory map closes with the file
  if not np.isfinite(emb).all():
    return None
  return emb, meta


def save(cache_dir: str, dataset: str, extractor: str, key: str, emb: np.ndarray,
         meta: dict[str, Any]) -> str:
  """Writes the matrix (atomically: temp file, then rename) and its metadata; returns the .npy."""
  npy, meta_path = paths(cache_dir, dataset, extractor, key)
  if not np.isfinite(emb).all():
    raise DivergenceError(f"{extractor}: the embeddings of {dataset} hold NaN/inf; not cached at "
                          f"{npy}; check the extractor's weights and config.pooling")
  records.write_atomic(npy, lambda f: np.save(f, np.asarray(emb, np.float32)))
  records.write_json(meta_path, {**meta, "key": key, "shape": list(emb.shape)})
  return npy
