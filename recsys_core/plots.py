"""Shared plotting (PNG, matplotlib Agg): learning curves of runs, and the one way figures are saved.

Other plotting modules take pyplot from here (`from recsys_core.plots import plt`), so the headless Agg
backend is chosen in one place.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def read_validations(workdir: str) -> list[dict]:
  """The run's metrics.jsonl records (one per validation), [] when it has none yet."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(curves: Mapping[str, Sequence[Mapping]], metric: str, path: str,
                         title: str = "") -> str:
  """`metric` against epoch, one line per run; a run's best epoch is marked with a dot.

  Args:
    curves: label -> metrics.jsonl records ({"epoch": int, metric: float, ...}) of one run.
    metric: e.g. "valid/ndcg@10".
    path: PNG to write (folders are created).
  Returns:
    path.
  """
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for label, lines in curves.items():
    lines = [r for r in lines if metric in r]
    if not lines:
      continue
    epochs, values = [r["epoch"] for r in lines], [r[metric] for r in lines]
    (drawn,) = ax.plot(epochs, values, label=label)
    best = max(range(len(values)), key=values.__getitem__)
    ax.plot(epochs[best], values[best], "o", color=drawn.get_color())
  ax.set_xlabel("epoch")
  ax.set_ylabel(metric)
  ax.set_title(title or f"{metric} per epoch")
  ax.grid(alpha=.3)
  ax.legend(fontsize=8)
  return save(fig, path)


def save(fig, path: str) -> str:
  """Write the figure as a PNG at `path` (folders created) and close it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
