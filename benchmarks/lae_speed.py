"""Speed of the LAE solve against GEMM and against numpy pipelines, measured in the same run.

  python -m benchmarks.lae_speed --n=8000 --preset=ease_ml-1m_strong --out=benchmarks/results/lae_speed.md

1. Kernel: the SPD inverse of an [n, n] Gram matrix (n^3 flops) as GFLOP/s and as a share of a
   same-size float32 GEMM (2 n^3 flops), for our backends and numpy/scipy.
2. End to end on real data (load, Gram, solve, evaluate): our pipeline (launch's code path) against
   a numpy pipeline of the official code's kind (dense Gram, numpy.linalg.inv in float64, dense
   scores, argpartition top-k), with the same split and the same metric definitions. Where
   numpy.linalg.inv does not fit (gowalla) the reference inverts in place on one OpenBLAS thread
   (see reference_inverse); the table then also gives the speed-up with that inverse credited
   with perfect scaling to every core, a lower bound.
Run it on a quiet machine: the load average is printed beside the figures.
"""

import ctypes
import glob
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from benchmarks import reports
from configs import lae as lae_configs
from recsys_core import metrics as metrics_lib
from lae_jax import linalg
from lae_jax import run as lae_run
from lae_jax import solve

_N = flags.DEFINE_integer("n", 8000, "size of the kernel benchmark's Gram matrix")
_PRESETS = flags.DEFINE_list("preset", ["ease_ml-100k_strong", "ease_ml-1m_strong"], "configs/lae.py presets")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_REPEATS = flags.DEFINE_integer("repeats", 2, "timed repeats (best is kept) after one warm-up")
_OUT = flags.DEFINE_string("out", "", "also write the markdown table here")
_WARMUP = flags.DEFINE_bool("warmup", True, "time our pipeline after a warm-up run (--nowarmup: one "
                            "cold run, compilation included; for gowalla's minutes-long runs)")


def best_time(fn, repeats, warmup=True):
  if warmup:
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def random_gram(n, seed=0):
  rng = np.random.default_rng(seed)
  x = sp.random(2 * n, n, density=20 / n, random_state=rng, dtype=np.float32, format="csr")
  x.data[:] = 1.0
  g = linalg.gram_matrix(x)
  g[np.diag_indices_from(g)] += 50.0
  return g


def kernel_rows(n, repeats):
  g = random_gram(n)
  gj = jnp.asarray(g)
  matmul = jax.jit(lambda a: a @ a)
  gemm_s = best_time(lambda: matmul(gj).block_until_ready(), repeats)
  gemm_gflops = 2 * n**3 / gemm_s / 1e9
  candidates = {
      "ours: lapack potrf+potri in place (CPU default)": lambda: linalg.spd_inverse(g.copy(), "lapack"),
      "ours: jax cho_factor+cho_solve (accelerator default)":
          lambda: linalg.spd_inverse(gj, "jax").block_until_ready(),
      "numpy.linalg.inv float32": lambda: np.linalg.inv(g),
      "scipy.linalg.inv float32": lambda: scipy.linalg.inv(g),
  }
  rows = [("jax GEMM float32 (2n^3)", gemm_s, gemm_gflops, 1.0)]
  for name, fn in candidates.items():
    seconds = best_time(fn, repeats)
    gflops = n**3 / seconds / 1e9
    rows.append((name, seconds, gflops, gflops / gemm_gflops))
  return rows


def reference_dtype(num_items):
  """float64 where numpy.linalg.inv's ~4 dense [n, n] buffers fit in 60% of memory, else float32."""
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return np.float64 if 4 * num_items**2 * 8 < 0.6 * memory else np.float32


def reference_inverse(g):
  """Dense general (LU) inverse, the official code's kind: numpy.linalg.inv where its buffers fit,
  else LAPACK getrf+getri in place through numpy's own 64-bit-integer OpenBLAS (numpy.linalg.inv
  needs 4 dense copies, 27 GB for gowalla in float32; scipy 1.17's inv copies too).

  The in-place path runs OpenBLAS on ONE thread: at n = 40,981 its multi-threaded sgetrf segfaults
  on the benchmark's host (scipy's LP64 0.3.30 and numpy's ILP64 0.3.31 alike; our own Cholesky is
  recursive above 16,384 rows for the same kind of reason). Returns (inverse, threads used)."""
  if 4 * g.size * g.itemsize < 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):
    return np.linalg.inv(g), os.cpu_count()
  libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas64_*.so"))
  if not libs or not (g.flags.c_contiguous or g.flags.f_contiguous):
    raise RuntimeError("the in-place reference inverse needs numpy's bundled scipy_openblas64 "
                       "(numpy wheels from PyPI) and a contiguous matrix")
  lib = ctypes.CDLL(libs[0])
  kind = {np.float32: "s", np.float64: "d"}[g.dtype.type]
  getrf, getri = (getattr(lib, f"scipy_LAPACKE_{kind}{name}64_") for name in ("getrf", "getri"))
  i64, ptr = ctypes.c_int64, ctypes.c_void_p
  getrf.restype = getri.restype = i64
  getrf.argtypes = [ctypes.c_int, i64, i64, ptr, i64, ptr]
  getri.argtypes = [ctypes.c_int, i64, ptr, i64, ptr]
  n = g.shape[0]
  pivots = np.empty(n, np.int64)
  col_major = 102  # g is symmetric: its buffer read column-major is g in either order
  threads_before = lib.scipy_openblas_get_num_threads64_()
  lib.scipy_openblas_set_num_threads64_(1)
  try:
    info = getrf(col_major, n, n, g.ctypes.data, n, pivots.ctypes.data)
    info = info or getri(col_major, n, g.ctypes.data, n, pivots.ctypes.data)
  finally:
    lib.scipy_openblas_set_num_threads64_(threads_before)
  if info:
    raise np.linalg.LinAlgError(f"LAPACK {kind}getrf/{kind}getri info {info}")
  return (g if g.flags.f_contiguous else g.T), 1  # g's buffer holds the inverse, column-major


def numpy_pipeline(split, config, user_batch=2048):
  """The official code's kind of pipeline: sparse X^T X made dense (float64 where it fits, else float32),
  a dense LU inverse, dense scores (in user batches), argpartition top-k.
  Returns (metrics, seconds in the inverse, OpenBLAS threads it used)."""
  dtype = reference_dtype(split.num_items)
  g = (split.train.T @ split.train).toarray().astype(dtype)  # as EASE's notebook: sparse X^T X
  g[np.diag_indices_from(g)] += config.lam
  start = time.perf_counter()
  b, threads = reference_inverse(g)
  inverse_s = time.perf_counter() - start
  del g
  b /= -np.diag(b)[None, :]
  b[np.diag_indices_from(b)] = 0.0
  k = max(config.ks)
  tops = []
  for start in range(0, split.test.fold_in.shape[0], user_batch):
    fold_in = split.test.fold_in[start:start + user_batch].toarray().astype(dtype)
    scores = fold_in @ b
    scores[fold_in > 0] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    tops.append(np.take_along_axis(top, order, 1))
  metrics = metrics_lib.mean_over_users(metrics_lib.ranking_metrics(
      np.concatenate(tops), split.test.target, config.ks, config.recall_normalization, None))
  return metrics, inverse_s, threads


def end_to_end_rows(preset, data_dir, repeats):
  config = lae_configs.get_config(preset)
  config.data_dir, config.progress = data_dir, False
  split = lae_run.load_split(config)

  ours_result, ref_result, ref_inverse = {}, {}, {}

  def ours():
    b, _ = solve.fit(split.train, "ease", lam=config.lam)
    score_fn, params, batch_inputs = solve.scorer(b, split.test.fold_in)
    ours_result.update(metrics_lib.evaluate(score_fn, params, split.test, config.ks,
                                            normalization=config.recall_normalization,
                                            progress=False, batch_inputs=batch_inputs))

  def reference():
    metrics, ref_inverse["s"], ref_inverse["threads"] = numpy_pipeline(split, config)
    ref_result.update(metrics)

  load_s = best_time(lambda: lae_run.load_split(config), 1)
  ours_s = best_time(ours, repeats, warmup=_WARMUP.value)  # no warm-up: compiling counts
  ref_s = best_time(reference, max(1, repeats - 1), warmup=False)  # numpy compiles nothing
  ndcg_ours, ndcg_ref = ours_result[f"ndcg@{max(config.ks)}"], ref_result[f"ndcg@{max(config.ks)}"]
  # A single-threaded reference inverse (see reference_inverse) is credited with perfect scaling
  # to every core here, so that this speed-up is a lower bound, never inflated by the handicap.
  cores = os.cpu_count()
  ref_scaled_s = ref_s - ref_inverse["s"] * (1 - ref_inverse["threads"] / cores)
  return dict(preset=preset, items=split.num_items, load_s=load_s, ours_s=ours_s + load_s,
              ref_s=ref_s + load_s, speedup=(ref_s + load_s) / (ours_s + load_s),
              ref_inverse_s=ref_inverse["s"], ref_threads=ref_inverse["threads"],
              speedup_scaled=(ref_scaled_s + load_s) / (ours_s + load_s),
              ndcg_ours=ndcg_ours, ndcg_ref=ndcg_ref,
              ref_dtype=np.dtype(reference_dtype(split.num_items)).name)


def main(_):
  load = os.getloadavg()
  lines = [f"Regenerate: `python -m benchmarks.lae_speed --n={_N.value} --repeats={_REPEATS.value} "
           f"--{'' if _WARMUP.value else 'no'}warmup --preset={','.join(_PRESETS.value)} "
           f"--out={_OUT.value}` (on a quiet machine).",
           "Kernel rows count n^3 flops for the SPD inverse and 2 n^3 for the GEMM; end-to-end rows include",
           "loading the split (shared by both pipelines) and use the same metric code.", "",
           f"### SPD inverse at n = {_N.value} (float32), best of {_REPEATS.value}", "",
           "| kernel | seconds | GFLOP/s | share of GEMM |", "|---|---|---|---|"]
  for name, seconds, gflops, share in kernel_rows(_N.value, _REPEATS.value):
    lines.append(f"| {name} | {seconds:.2f} | {gflops:.0f} | {share:.0%} |")
  lines += ["", "### EASE end to end (load + Gram + solve + evaluate test), same split, same metrics", "",
            "| preset | items | ours s | numpy s | numpy dtype | numpy inverse s (threads) | speed-up | "
            "speed-up, numpy inverse scaled to all cores | NDCG@100 ours | NDCG@100 numpy |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for preset in _PRESETS.value:
    r = end_to_end_rows(preset, _DATA_DIR.value, _REPEATS.value)
    lines.append(f"| {r['preset']} | {r['items']} | {r['ours_s']:.2f} | {r['ref_s']:.2f} | "
                 f"{r['ref_dtype']} | {r['ref_inverse_s']:.1f} ({r['ref_threads']}) | {r['speedup']:.1f}x | "
                 f"{r['speedup_scaled']:.1f}x | {r['ndcg_ours']:.4f} | {r['ndcg_ref']:.4f} |")
  lines = ["# LAE solve speed", "", *reports.setup_block(load, os.getloadavg(), ("jax", "numpy", "scipy")),
           *lines]
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
