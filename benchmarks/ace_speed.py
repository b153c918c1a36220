"""Speed and memory of the ACE closed form on catalogue-sized embeddings, against references in the same run.

  python -m benchmarks.ace_speed --sizes=12101x576,100000x4096 --out=benchmarks/results/ace_speed.md

For each [items, dims] size a synthetic E of unit rows in a narrow cone (mean cosine ~.65-.7, as LLM
embeddings) goes through our `lae_jax.ace.ace_item_table` (the d x d Gram matrix, never items x items)
and, measured in the same run:
  - a same-size float32 GEMM E^T E in numpy (the floor: our solve is one such product plus a d x d eigh
    and an [n, d] x [d, k] product), as ours / GEMM;
  - numpy's float64 thin SVD of E (the textbook route), as its time / ours, and as the accuracy
    reference: the Gram matrix of a sample of 500 rows of both tables (subspace invariant);
  - the items x items route of the authors' code (eigh of E E^T, float64) where it fits
    (items <= --items_gram_max); otherwise the memory it would need.
Run it on a quiet machine: the load average is printed beside the figures.
"""

import os
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from lae_jax import ace
from recsys_core import records

_SIZES = flags.DEFINE_list("sizes", ["12101x576", "100000x4096"], "items x dims of E")
_K = flags.DEFINE_integer("k", 128, "kept directions (the backbone's hidden size)")
_LAM = flags.DEFINE_float("lam", 50.0, "ACE lambda")
_SVD_MAX = flags.DEFINE_integer("svd_max", 200_000_000, "run numpy's SVD only up to this many entries")
_ITEMS_GRAM_MAX = flags.DEFINE_integer("items_gram_max", 6000, "run the items x items eigh up to this")
_OUT = flags.DEFINE_string("out", "", "also write the markdown table here")


def cone(n, d, seed=0):
  """[n, d] float32 unit rows around one direction, with a decaying spectrum around it."""
  rng = np.random.default_rng(seed)
  scales = (1.0 / np.sqrt(1.0 + np.arange(d))).astype(np.float32)
  e = rng.standard_normal((n, d), dtype=np.float32) * (0.25 * scales)
  e[:, 0] += 1.0
  return e / np.linalg.norm(e, axis=1, keepdims=True)


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def reference_table(u, s, k, lam):
  """U_k g(S_k) from a thin SVD (float64), unscaled."""
  return u[:, :k] * np.sqrt(s[:k] ** 2 / (s[:k] ** 2 + lam))


def gram_gap(ours, reference, rows):
  """Max |G_ours - G_ref| / max |G_ref| over the item pairs of `rows` (both tables at the same scale)."""
  a = ours[rows] / np.std(ours)
  b = reference[rows] / np.std(reference)
  return float(np.max(np.abs(a @ a.T - b @ b.T)) / np.max(np.abs(b @ b.T)))


def measure(n, d):
  e = cone(n, d)
  k, lam = min(_K.value, d), _LAM.value
  rss_before = records.peak_rss_gb()
  table = lambda: np.asarray(ace.ace_item_table(e, lam, k, 0.1))
  _, cold_s = timed(table)  # compiles for this shape
  ours, ours_s = timed(table)
  rss_ours = records.peak_rss_gb()
  _, gemm_s = timed(lambda: e.T @ e)
  row = dict(size=f"{n} x {d}", input_gb=e.nbytes / 1e9, cold_s=cold_s, ours_s=ours_s, gemm_s=gemm_s,
             rss_gb=rss_ours, rss_before_gb=rss_before, items_gram_gb=n * n * 8 / 1e9)
  rows = np.random.default_rng(1).choice(n, min(n, 500), replace=False)
  if n * d <= _SVD_MAX.value:
    (u, s, _), svd_s = timed(lambda: np.linalg.svd(e.astype(np.float64), full_matrices=False))
    row.update(svd_s=svd_s, gap=gram_gap(ours, reference_table(u, s, k, lam), rows))
  if n <= _ITEMS_GRAM_MAX.value:
    def items_route():
      w, v = np.linalg.eigh(e.astype(np.float64) @ e.astype(np.float64).T)
      w, v = np.maximum(w[::-1][:k], 0.0), v[:, ::-1][:, :k]
      return v * np.sqrt(w / (w + lam))
    items_table, items_s = timed(items_route)
    row.update(items_s=items_s, items_gap=gram_gap(ours, items_table, rows))
  return row


def fmt(row, key, spec):
  return format(row[key], spec) if key in row else "—"


def main(argv):
  del argv
  load = os.getloadavg()
  results = []
  for size in _SIZES.value:
    n, d = (int(x) for x in size.lower().split("x"))
    results.append(measure(n, d))
    print(results[-1], flush=True)
  lines = [
      "# ACE closed form: speed and memory", "", *reports.setup_block(load, os.getloadavg()),
      f"Regenerate: `python -m benchmarks.ace_speed --sizes={','.join(_SIZES.value)} --k={_K.value} "
      f"--lam={_LAM.value:g} --out={_OUT.value}` (on a quiet machine).", "",
      "E: synthetic unit rows in a narrow cone (float32). Ours: `ace_item_table` (d x d Gram matrix, "
      "eigh, one [n, d] x [d, k] product; warm, after a compiling call). GEMM: numpy float32 E^T E, the "
      "floor. SVD: numpy float64 thin SVD of E. Items x items: eigh of E E^T in float64, the route of the "
      "authors' code. Gap: max |G - G_ref| / max |G_ref| over the item-pair Gram matrix of 500 sampled "
      "items, both tables at the same std. Peak RSS is the process's (E, numpy's copies and JAX's).", "",
      "| items x dims | E (GB) | ours (s) | compile+run (s) | ours / GEMM | SVD (s) | SVD / ours | gap vs SVD "
      "| items x items (s) | its gap | its memory (GB) | peak RSS (GB) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results:
    svd_ratio = f"{r['svd_s'] / r['ours_s']:.1f}x" if "svd_s" in r else "—"
    lines.append(
        f"| {r['size']} | {r['input_gb']:.2f} | {r['ours_s']:.2f} | {r['cold_s']:.2f} | "
        f"{r['ours_s'] / r['gemm_s']:.2f}x | {fmt(r, 'svd_s', '.2f')} | "
        f"{svd_ratio} | {fmt(r, 'gap', '.1e')} | "
        f"{fmt(r, 'items_s', '.2f')} | {fmt(r, 'items_gap', '.1e')} | {r['items_gram_gb']:.1f} | "
        f"{r['rss_gb']:.2f} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
