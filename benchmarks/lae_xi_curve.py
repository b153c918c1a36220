"""The xi curve of RLAE and RDLAE on gowalla strong: every xi in 0, .1, ..., 1 from ONE inverse.

  nice -n 19 python -m benchmarks.lae_xi_curve --data_dir=../shared/data \
      --out=benchmarks/results/lae_xi.md --plot=benchmarks/results/lae_xi_curve.png

For each model at the paper's lambda (and p): C = (X^T X + diagMat(gamma))^-1 once
(`sweep.xi_inverse`), then per xi only the column scale gamma + mu(xi) changes (`sweep.xi_curve`):
the test users' X_u C is computed once and every xi is scored as X_u - (X_u C) diagMat(scale).
Reported per xi: Recall@20 overall / head / tail and NDCG@20, the active constraints; and the time of
the whole curve against separate solves (`solve.fit` + evaluation per xi; those at --separate_xis are
measured, the rest of the 11 are extrapolated from their mean, and the table says so). The measured
separate solves also check that they give the curve's metrics.
"""

import os
import time

from absl import app
from absl import flags
import numpy as np
import scipy.sparse as sp

from benchmarks import reports
from configs import lae as lae_configs
from lae_jax import run as lae_run
from lae_jax import solve
from lae_jax import sweep
from recsys_core import metrics as metrics_lib
from recsys_core import records
from recsys_core.plots import plt, save

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding gowalla_strong/")
_MODELS = flags.DEFINE_list("models", ["rlae", "rdlae"], "relaxed models (configs/lae.py presets)")
_DATASET = flags.DEFINE_string("dataset", "gowalla_strong", "configs/lae.py dataset of the presets")
_SEPARATE = flags.DEFINE_list("separate_xis", ["0.4"], "xi solved separately (timed, checked)")
_OUT = flags.DEFINE_string("out", "", "write the markdown report here")
_PLOT = flags.DEFINE_string("plot", "", "write the PNG here")
_JSON = flags.DEFINE_string("json", "", "write the raw numbers here")

XIS = tuple(round(0.1 * i, 1) for i in range(11))
METRICS = ("recall@20", "head_recall@20", "tail_recall@20", "ndcg@20")


def _evaluate(config, split, items, score_fn, params, batch_inputs) -> dict:
  return metrics_lib.evaluate(score_fn, params, split.test, (20,),
                              normalization=config.recall_normalization, head_items=items,
                              batch_size=config.eval_batch_size, progress=False,
                              batch_inputs=batch_inputs)


def curve(config, split, items) -> dict:
  """Every xi of XIS from one inverse: {"points": [...], "inverse_s", "curve_s"}."""
  start = time.perf_counter()
  c, gamma = sweep.xi_inverse(split.train, config.model, lam=config.lam, p=config.p,
                              dtype=np.dtype(config.dtype))
  host_c = np.asarray(c)
  inverse_s = time.perf_counter() - start
  xi_curve = sweep.xi_curve(np.diagonal(host_c), gamma, XIS)
  fold_in = sp.csr_matrix(split.test.fold_in, dtype=host_c.dtype)
  fold_in_c = fold_in @ host_c                       # [test users, n], once for every xi
  del c, host_c
  points = []
  for xi, scale, active in zip(xi_curve.xis, xi_curve.scales, xi_curve.num_active):
    inputs = lambda a, b, s=scale: sweep.xi_scores(fold_in[a:b].toarray(), fold_in_c[a:b], s)
    result = _evaluate(config, split, items, solve.given_scores, (), inputs)
    points.append({"xi": xi, "num_active": int(active), **{m: result[m] for m in METRICS}})
  return {"points": points, "inverse_s": inverse_s, "curve_s": time.perf_counter() - start}


def separate(config, split, items, xi) -> dict:
  """One separate solve + evaluation at xi, timed: what the curve replaces."""
  start = time.perf_counter()
  b, info = solve.fit(split.train, config.model, lam=config.lam, p=config.p, xi=xi,
                      dtype=np.dtype(config.dtype))
  result = _evaluate(config, split, items, *solve.scorer(b, split.test.fold_in))
  del b
  return {"xi": xi, "seconds": time.perf_counter() - start, "solve_s": info.solve_s,
          **{m: result[m] for m in METRICS}}


def plot(results: dict, path: str) -> None:
  fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
  for ax, (model, r) in zip(axes[0], results.items()):
    xs = [p["xi"] for p in r["points"]]
    for metric, label in (("recall@20", "overall"), ("head_recall@20", "head"),
                          ("tail_recall@20", "tail")):
      ax.plot(xs, [p[metric] for p in r["points"]], "o-", ms=3, label=label)
    ax.axvline(r["config"]["xi"], color="grey", ls=":", lw=1, label=f"preset ξ={r['config']['xi']}")
    ax.set_xlabel("ξ (diag(B) ≤ ξ)")
    ax.set_ylabel("Recall@20")
    ax.set_title(f"{model.upper()} {r['hyper']}")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
  save(fig, path)


def report(results: dict, load_before, load_after, command: str) -> str:
  lines = ["# RLAE / RDLAE: the ξ curve from one inverse", "",
           *reports.setup_block(load_before, load_after, ("jax", "numpy", "scipy")),
           f"Command: `{command}`", "",
           "Each model at the paper's λ (and p) on gowalla strong: C = (XᵀX + diagMat(γ))⁻¹ solved once, "
           "every ξ in 0, .1, ..., 1 from it (only μ(ξ) changes; `lae_jax/sweep.py` `xi_curve`). "
           "ξ = 0 is EASE / EDLAE and ξ = 1 LAE / DLAE at the same λ (not their own best λ). "
           "Recall@20 divided by min(20, |test|); head = the ceil(20%) items with the most training "
           "users (official rule, `recsys_core.metrics.head_item_mask`).", ""]
  for model, r in results.items():
    lines += [f"## {model.upper()} ({r['hyper']})", "",
              "| ξ | recall@20 | head recall@20 | tail recall@20 | ndcg@20 | active ξ columns |",
              "|---|---|---|---|---|---|"]
    for p in r["points"]:
      lines.append(f"| {p['xi']:.1f} | {p['recall@20']:.4f} | {p['head_recall@20']:.4f} | "
                   f"{p['tail_recall@20']:.4f} | {p['ndcg@20']:.4f} | {p['num_active']} |")
    measured = r["separate"]
    per_solve = float(np.mean([s["seconds"] for s in measured])) if measured else float("nan")
    lines += ["", f"- Curve: {r['curve_s']:.0f} s for all {len(XIS)} ξ (inverse {r['inverse_s']:.0f} s, "
              f"then {(r['curve_s'] - r['inverse_s']) / len(XIS):.1f} s per ξ)."]
    if measured:
      lines.append(f"- Separate solves: {per_solve:.0f} s per ξ (measured at ξ = "
                   f"{', '.join(str(s['xi']) for s in measured)}), so {len(XIS)} separate solves "
                   f"≈ {per_solve * len(XIS):.0f} s (extrapolated): {per_solve * len(XIS) / r['curve_s']:.1f}x "
                   "the curve's time.")
      for s in measured:
        point = next(p for p in r["points"] if abs(p["xi"] - s["xi"]) < 1e-9)
        diff = max(abs(point[m] - s[m]) for m in METRICS)
        lines.append(f"- Check at ξ = {s['xi']}: the separate solve's metrics differ from the "
                     f"curve's by at most {diff:.1e} (recall@20 {s['recall@20']:.4f}).")
    lines.append("")
  return "\n".join(lines)


def main(_):
  load_before = os.getloadavg()
  results = {}
  for model in _MODELS.value:
    config = lae_configs.get_config(f"{model}_{_DATASET.value}")
    config.data_dir = _DATA_DIR.value
    split = lae_run.load_split(config)
    items = metrics_lib.head_item_mask(split.item_counts(), config.head_fraction)
    hyper = f"λ={config.lam:g}" + (f", p={config.p:g}" if model == "rdlae" else "")
    r = curve(config, split, items)
    print(model, "curve", f"{r['curve_s']:.0f}s", [round(p["recall@20"], 4) for p in r["points"]],
          flush=True)
    r["separate"] = [separate(config, split, items, float(xi)) for xi in _SEPARATE.value if xi]
    r.update(config={"lam": config.lam, "p": config.p, "xi": config.xi}, hyper=hyper)
    results[model] = r
  command = "nice -n 19 python -m benchmarks.lae_xi_curve " + " ".join(
      f"--{name}={value}" for name, value in (("data_dir", _DATA_DIR.value), ("out", _OUT.value),
                                              ("plot", _PLOT.value), ("json", _JSON.value)) if value)
  text = report(results, load_before, os.getloadavg(), command)
  print(text)
  if _JSON.value:
    records.write_json(_JSON.value, results)
  if _PLOT.value:
    plot(results, _PLOT.value)
  if _OUT.value:
    if _PLOT.value:
      text += f"\n![Recall@20 against ξ]({os.path.relpath(_PLOT.value, os.path.dirname(_OUT.value))})\n"
    reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
