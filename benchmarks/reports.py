"""What the report generators share: the committed archive of finished runs' small outputs, markdown
reports that keep their hand-written notes, paired-difference tables, and the Setup block of speed
reports.

The library (recsys_core/records.py) writes a run's files; this module is the lab's side: it copies
them into `benchmarks/results/runs/` so a report regenerates after the run folder is gone.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any, BinaryIO, Callable, Mapping

import jax
import numpy as np

from recsys_core import records
from recsys_core.metrics import paired_difference

# What a finished run leaves that a report needs (no checkpoints): a few kB to tens of kB per run.
ARCHIVED_FILES = ("metrics.json", "metrics.jsonl", "config.json", "eval.json", "test_per_user.npz")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\",;)]+")  # not inside a relative path or URL


def portable(value: Any, root: str = ROOT) -> Any:
  """`value` (a JSON tree) with every absolute path in its strings made relative to the repository
  root (`/data/shared/data` -> `../shared/data`), so the archive names no machine's folders."""
  if isinstance(value, str):
    return _ABSOLUTE_PATH.sub(lambda m: os.path.relpath(m.group(0), root), value)
  if isinstance(value, list):
    return [portable(v, root) for v in value]
  if isinstance(value, dict):
    return {k: portable(v, root) for k, v in value.items()}
  return value


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
        records.write_atomic(target, lambda f, a=dict(arrays): np.savez_compressed(f, **a))
    elif name.endswith(".json"):
      with open(source) as f:
        records.write_json(target, portable(json.load(f)))
    else:
      records.write_atomic(target, _copy_of(source))


def _copy_of(path: str) -> Callable[[BinaryIO], None]:
  def write(f):
    with open(path, "rb") as source:
      shutil.copyfileobj(source, f)
  return write


def launch_run(args: list, workdir: str, log_mode: str = "a") -> tuple[list, int, float]:
  """Runs `python launch.py *args --workdir=workdir` from the repository root, its output into
  workdir/log.txt; returns (the command, its exit status, its wall seconds)."""
  os.makedirs(workdir, exist_ok=True)
  command = [sys.executable, os.path.join(ROOT, "launch.py"), *args, f"--workdir={workdir}"]
  print(" ".join(command), flush=True)
  start = time.perf_counter()
  with open(os.path.join(workdir, "log.txt"), log_mode) as log:
    code = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  wall = time.perf_counter() - start
  print(f"  exit {code} after {wall:.0f}s", flush=True)
  return command, code, wall


def failure(workdir: str) -> str:
  """A run's last one-line error ("error: ..." in workdir/log.txt, escaped for a table cell), or
  "pending" (not run, or not finished)."""
  log = os.path.join(workdir, "log.txt")
  if os.path.exists(log):
    with open(log) as f:
      errors = [line.strip() for line in f if line.startswith("error:")]
    if errors:
      return errors[-1].replace("|", "\\|")
  return "pending"


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
      d = paired_difference(reference[metric], other[metric])
      cells.append(f"{d['mean']:+.4f} ± {d['se']:.4f} | {d['mean'] / d['se']:+.1f}")
    rows.append(f"| {name} | " + " | ".join(cells) + f" | {d['n']} |")
  if not rows:
    return []
  header = " | ".join(f"Δ {m} ± SE | z" for m in metrics)
  return [f"| {label} | {header} | users |", "|---" * (2 * len(metrics) + 2) + "|", *rows]


def setup_block(load_before, load_after=None, versions=("jax", "numpy")) -> list[str]:
  """The "## Setup" lines a speed report starts with: the running host's CPU and memory (and the jax
  device when it is not the CPU), the versions of `versions`, and the load averages (1, 5, 15 min)
  before and after the measurement."""
  model = ""
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  hardware = f"{os.cpu_count()}-core {platform.machine()} CPU{f' ({model})' if model else ''}, " \
             f"{memory:.0f} GiB of memory"
  device = jax.devices()[0]
  if device.platform != "cpu":
    hardware += f"; {jax.device_count()} x {device.device_kind}"
  software = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in versions)
  load = " / ".join(", ".join(f"{x:.2f}" for x in l) for l in (load_before, load_after) if l)
  return ["## Setup", "", f"- Hardware: {hardware}.",
          f"- Software: Python {platform.python_version()}, {software} (jax backend "
          f"{jax.default_backend()}).",
          f"- Load average (1, 5, 15 min) before{' / after' if load_after else ''}: {load}.", ""]
