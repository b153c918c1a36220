"""Plots of ACE (PNG, matplotlib Agg): the spectrum over a lambda grid, and a metric against lambda.

Both take plain arrays / records, so they plot real runs and synthetic checks alike.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from lae_jax import ace
from recsys_core import plots
from recsys_core.plots import plt  # pyplot with the Agg backend chosen


def plot_spectra(raw: np.ndarray, lams: Sequence[float], path: str, k: Optional[int] = None,
                 title: str = "") -> str:
  """Singular values of the raw embeddings and of E_ace for each lambda, each divided by its
  largest, on a log scale (a flat line is isotropic).

  Args:
    raw: [r] singular values of E, descending.
    lams: lambda grid.
    path: PNG to write (folders are created).
    k: the truncation (hidden size), drawn as a vertical line.
  Returns:
    path.
  """
  raw = np.asarray(raw, np.float64)
  raw = raw[raw > 0]
  index = np.arange(1, len(raw) + 1)
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  ax.plot(index, raw / raw[0], color="black", lw=2, label="raw E")
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(lams)))
  for lam, color in zip(lams, colors):
    g = np.asarray(ace.ace_gain(np.square(raw), lam), np.float64)
    ax.plot(index, g / g[0], color=color, label=f"ACE λ={lam:g}")
  if k:
    ax.axvline(k, color="gray", ls=":", label=f"k={k}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("singular direction (descending)")
  ax.set_ylabel("singular value / largest")
  ax.set_title(title or "Spectrum of raw vs ACE embeddings")
  ax.legend(fontsize=7)
  return plots.save(fig, path)


def plot_metric_vs_lambda(runs: Sequence[Mapping], metric: str, path: str,
                          reference: Optional[Mapping[str, float]] = None, title: str = "") -> str:
  """Mean (+- std over seeds) of `metric` against lambda (symlog x axis: lambda = 0 is drawn).

  Args:
    runs: records {"lam": float, metric: float, ...}, one per run (several seeds per lambda).
    metric: key such as "test/ndcg@10".
    path: PNG to write.
    reference: optional {label: value} horizontal lines (e.g. the ID-only baseline).
  Returns:
    path.
  """
  lams = sorted({float(r["lam"]) for r in runs})
  values = [[float(r[metric]) for r in runs if float(r["lam"]) == lam] for lam in lams]
  mean = np.array([np.mean(v) for v in values])
  std = np.array([np.std(v) for v in values])
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  ax.errorbar(lams, mean, yerr=std, marker="o", capsize=3, label="ACE")
  for (label, value), ls in zip((reference or {}).items(), ("--", ":", "-.", (0, (1, 3)))):
    ax.axhline(value, ls=ls, color="gray", label=label)
  positive = [lam for lam in lams if lam > 0]
  linthresh = min(positive) if positive else 1.0
  ax.set_xscale("symlog", linthresh=linthresh)
  ax.set_xlim(-0.5 * linthresh, 2.0 * max(lams + [linthresh]))
  ax.set_xlabel("λ")
  ax.set_ylabel(metric)
  ax.set_title(title or f"{metric} against λ")
  ax.legend(fontsize=8)
  return plots.save(fig, path)
