"""Run records on disk: atomic JSON and .npz files, append-only JSON-lines logs, peak memory.

Every file a run writes outside its checkpoints goes through here, and in a job of several
processes only process 0 writes (the others' calls return without writing): they all compute the
same records, and the workdir is shared.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from typing import Any, BinaryIO, Callable, Mapping

import jax
import numpy as np


def writes_files() -> bool:
  """Whether this process writes the job's files: process 0 of the job (the only one of a
  single-process run)."""
  return jax.process_index() == 0


def write_json(path: str, obj: Any) -> None:
  """Write `obj` as JSON to `path` atomically (temp file in the same folder, then rename)."""
  def write(f):
    f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
  write_atomic(path, write)


def write_arrays(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Write named arrays as one .npz file at `path`, atomically (`np.load(path)` reads them)."""
  write_atomic(path, lambda f: np.savez(f, **arrays))


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
  """write(f) into a temp file in path's folder, fsync, rename over path: no half-written file.

  The project's one way to write a file that others read (results, caches, ID files): a run killed
  or out of disk at any moment leaves the previous file or the new one, never a torn one.
  """
  if not writes_files():
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
  """Append one JSON object as a line (a killed run leaves whole lines behind, at worst a torn last one)."""
  if not writes_files():
    return
  with open(path, "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()


def prefixed(prefix: str, metrics: Mapping[str, Any]) -> dict:
  """{"recall@20": x} -> {"test/recall@20": x}."""
  return {f"{prefix}/{name}": value for name, value in metrics.items()}


def peak_rss_gb() -> float:
  """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
