"""Run records on disk: atomic JSON and .npz files, append-only JSON-lines logs, reports, and the
committed archive of finished runs' small outputs that report generators fall back on."""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np


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


# What a finished run leaves that a report needs (no checkpoints): a few kB to tens of kB per run.
ARCHIVED_FILES = ("metrics.json", "metrics.jsonl", "config.json", "eval.json", "test_per_user.npz")


def archive_run(workdir: str, archive: str) -> None:
  """Copies a finished run's ARCHIVED_FILES from `workdir` into `archive` (per-user arrays
  recompressed), each file atomically, metrics.json last, so that a report regenerated after the
  run folder is gone (a new machine, a cleaned disk) still finds it through `run_source`."""
  for name in sorted(ARCHIVED_FILES, key=lambda n: n == "metrics.json"):
    source = os.path.join(workdir, name)
    if not os.path.exists(source):
      continue
    target = os.path.join(archive, name)
    if name.endswith(".npz"):
      with np.load(source) as arrays:
        write_atomic(target, lambda f, a=dict(arrays): np.savez_compressed(f, **a))
    else:
      write_atomic(target, _copy_of(source))


def _copy_of(path: str) -> Callable[[BinaryIO], None]:
  def write(f):
    with open(path, "rb") as source:
      shutil.copyfileobj(source, f)
  return write


def entry(path: str, key: str) -> Any:
  """The value under `key` of the JSON object in `path`; None when the file or the key is missing
  (e.g. a report's text of runs that were lost, kept beside it)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f).get(key)


def run_source(workdir: str, archive: str) -> str:
  """The folder to read a run from: `workdir` when it holds a finished run (metrics.json), else
  its archived copy when there is one, else `workdir` (a run still training, or none)."""
  if os.path.exists(os.path.join(workdir, "metrics.json")):
    return workdir
  if os.path.exists(os.path.join(archive, "metrics.json")):
    return archive
  return workdir


NOTES_MARKER = "<!-- notes: hand-written, kept when the tables are regenerated -->"


def write_report(path: str, text: str, marker: str = NOTES_MARKER) -> None:
  """Write a generated markdown report; whatever follows `marker` in the file already at `path`
  (hand-written analysis) is kept below the new text, so regenerating never loses it."""
  notes = marker + "\n"
  if os.path.exists(path):
    with open(path) as f:
      previous = f.read()
    if marker in previous:
      notes = previous[previous.index(marker):]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text + "\n" + notes)


def paired_table(reference: Mapping[str, np.ndarray],
                 others: Mapping[str, Mapping[str, np.ndarray]],
                 metrics: tuple = ("recall@20", "ndcg@10"), label: str = "run") -> list[str]:
  """Markdown rows of reference minus each of `others` on the same users: per metric the mean
  per-user difference ± its standard error and z = difference / SE (`metrics.paired_difference`).

  reference, others[name]: metric -> [num_users] per-user values in one user order (a
  test_per_user.npz); a name whose arrays lack a metric is skipped.
  """
  rows = []
  for name, other in others.items():
    if not all(m in other and m in reference for m in metrics):
      continue
    cells = []
    for metric in metrics:
      from recsys_core.metrics import paired_difference  # pylint: disable=g-import-not-at-top
      d = paired_difference(reference[metric], other[metric])
      cells.append(f"{d['mean']:+.4f} ± {d['se']:.4f} | {d['mean'] / d['se']:+.1f}")
    rows.append(f"| {name} | " + " | ".join(cells) + f" | {d['n']} |")
  if not rows:
    return []
  header = " | ".join(f"Δ {m} ± SE | z" for m in metrics)
  return [f"| {label} | {header} | users |", "|---" * (2 * len(metrics) + 2) + "|", *rows]


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
  """Append one JSON object as a line (a killed run leaves whole lines behind, at worst a torn last one)."""
  with open(path, "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()


def prefixed(prefix: str, metrics: Mapping[str, Any]) -> dict:
  """{"recall@20": x} -> {"test/recall@20": x}."""
  return {f"{prefix}/{name}": value for name, value in metrics.items()}


def peak_rss_gb() -> float:
  """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
