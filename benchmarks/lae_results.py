"""Runs every LAE-family model and GF-CF on the real datasets and writes benchmarks/results/lae.md.

  python -m benchmarks.lae_results --runs_dir=runs/lae            # runs what is missing, then the report
  python -m benchmarks.lae_results --norun                        # only rebuild it (from the archive)

gowalla runs use the paper's hyperparameters (configs/lae.py); MovieLens runs use --mode=search over
the preset's grid (GF-CF, which has none, runs its preset). Each run is `python launch.py ...` in a
subprocess, so its peak RSS is its own; the driver records its command, wall time, machine and load
in launch.json beside it.

Run folders do not travel with the repository, so each finished run's small outputs (metrics.json,
config.json, launch.json, and a compact search.jsonl: the grid point, its active constraints and
three validation metrics) are copied into runs/lae/<run>/ beside the report
(benchmarks/results/runs/lae/), which is committed: a run whose folder is gone is read from there. A
row with no run in --runs_dir nor in the archive shows its error line or "pending".
"""

import json
import math
import os

from absl import app
from absl import flags

from benchmarks import reports
from configs import lae as lae_configs
from recsys_core import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py
MODELS = ("lae", "ease", "rlae", "dlae", "edlae", "rdlae", "gfcf")
DATASETS = (("gowalla_strong", "train"), ("gowalla_weak", "train"), ("ml-100k_strong", "search"),
            ("ml-1m_strong", "search"))
COLUMNS = ("recall@20", "ndcg@20", "precision@20", "urecall@20", "undcg@20", "head_recall@20",
           "tail_recall@20", "recall@50", "ndcg@100")
# One (lambda, p) point of the gowalla strong search, timed: its inverse and its whole xi grid. An
# inverse costs the same with a scalar or a vector regulariser, so it prices every model's grid.
SEARCH_POINTS = {"rdlae": ["--config.search.lam=(70.0,)", "--config.search.p=(0.5,)"]}
SEARCH_KEYS = ("lam", "p", "xi", "num_active", "valid/ndcg@100", "valid/recall@20", "valid/ndcg@20")
RELATED = (("lae_xi.md", "lae_xi_curve.png", "RLAE / RDLAE at every ξ from one inverse (gowalla strong)"),
           ("lae_spectrum_gowalla.md", "lae_spectrum_gowalla.png",
            "the gain v_kᵀ B v_k along the principal directions (gowalla strong)"),
           ("lae_spectrum.md", "lae_spectrum.png",
            "the gain v_kᵀ B v_k along the principal directions (ML-1M, every direction)"),
           ("lae_speed.md", None, "the solve and the official-style numpy pipeline, timed alone"))

PROTOCOL = """Regenerate: `python -m benchmarks.lae_results --runs_dir=runs/lae --data_dir=../shared/data` (runs
every missing preset, then the report; `--norun` rebuilds it from the committed archive
benchmarks/results/runs/lae/ alone). Each row is one
`python launch.py --config=configs/lae.py:<model>_<dataset>` run; its `metrics.json` is the source.

- gowalla: the official run scripts' hyperparameters (strong|weak/gowalla.sh), no search; GF-CF α = .1,
  256 singular vectors (strong/gowalla.sh; the weak scripts have no GF-CF line). MovieLens (not in the
  paper): `--mode=search` over the official ranges (configs/lae.py: λ on the scripts' ladder 10, 20,
  ..., 90, 100, ..., 900, 1000, ..., 10000 (ML-20M's script maximum), p and ξ in .1, ..., .9),
  selected on validation NDCG@100, test at the selected point; GF-CF runs its preset (α = .1).
- Recall@k is divided by min(k, |test|) (strong) or |test| (weak, LightGCN); NDCG@k's ideal DCG covers
  min(k, |test|) items; Precision@k = hits / k. uRecall / uNDCG: the official propensity-weighted
  forms (p_j = max((c_j / max c)^.5, .01) from the training counts c; `recsys_core/unbiased_metrics.py`).
  Head = the ceil(20%) items with the most training users, ties as the official code breaks them;
  head/tail metrics average over users with >= 1 test item in the group. Fold-in items are never
  ranked.
- Solve path: `woodbury` inverts the users x users system (fewer users than items), `woodbury-rows`
  additionally scores the training users straight from the Woodbury factors (weak generalization),
  `direct` inverts the dense items x items Gram matrix; `gfcf/arpack` is GF-CF's truncated SVD.
"""

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/lae", "one sub-folder per run")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_RUN = flags.DEFINE_bool("run", True, "run what has no metrics.json (in --runs_dir or the archive)")
_ONLY = flags.DEFINE_list("only", [], "run only these datasets (the report shows all)")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/lae.md"), "markdown output")
_ARCHIVE = flags.DEFINE_string("archive_dir", None, "committed copies of finished runs' small "
                               "outputs, read where a run folder is gone (default: runs/lae/ "
                               "beside --out)")


def workdir(name):
  return os.path.join(os.path.abspath(_RUNS_DIR.value), name)


def archived(name):
  root = _ARCHIVE.value or os.path.join(os.path.dirname(os.path.abspath(_OUT.value)), "runs", "lae")
  return os.path.join(root, name)


def source(name):
  """Where to read a run: its folder when finished, else its archived copy, else its folder."""
  return reports.run_source(workdir(name), archived(name))


def load(name, file="metrics.json"):
  path = os.path.join(source(name), file)
  return json.load(open(path)) if os.path.exists(path) else None


def machine():
  """The running host's hardware and software lines, as reports.setup_block writes them."""
  lines = reports.setup_block(os.getloadavg(), versions=("jax", "numpy", "scipy"))
  return {"hardware": lines[2][len("- Hardware: "):], "software": lines[3][len("- Software: "):]}


def ensure(name, preset, mode, *overrides):
  """Runs `preset` into runs_dir/<name> unless a finished run is there or archived, then archives
  a finished run."""
  folder = workdir(name)
  if _RUN.value and not os.path.exists(os.path.join(source(name), "metrics.json")):
    stale = os.path.join(folder, "search.jsonl")   # a killed search's points: the rerun redoes them
    if os.path.exists(stale):
      os.unlink(stale)
    load_before = os.getloadavg()
    command, code, wall = reports.launch_run(
        [f"--config=configs/lae.py:{preset}", f"--mode={mode}",
         f"--config.data_dir={_DATA_DIR.value}", "--config.progress=False", *overrides],
        folder, log_mode="w")
    records.write_json(os.path.join(folder, "launch.json"), {
        "command": "python " + " ".join(command[1:]).replace(ROOT + "/", ""), "exit": code,
        "wall_s": wall, "load_before": load_before, "load_after": os.getloadavg(),
        "nice": os.nice(0), **machine()})
  if os.path.exists(os.path.join(folder, "metrics.json")):
    archive(folder, archived(name))


def archive(folder, target):
  """reports.archive_run's files, launch.json, and search.jsonl cut to SEARCH_KEYS (the full one
  holds every validation metric of every point: megabytes for a dropout model's grid)."""
  reports.archive_run(folder, target)
  if os.path.exists(os.path.join(folder, "launch.json")):
    with open(os.path.join(folder, "launch.json")) as f:
      records.write_json(os.path.join(target, "launch.json"), reports.portable(json.load(f)))
  search = os.path.join(folder, "search.jsonl")
  if os.path.exists(search):
    points = [json.loads(line) for line in open(search) if line.strip()]
    text = "".join(json.dumps({k: round(p[k], 6) if isinstance(p[k], float) else p[k]
                               for k in SEARCH_KEYS if k in p}) + "\n" for p in points)
    records.write_atomic(os.path.join(target, "search.jsonl"), lambda f: f.write(text.encode()))


def hyper_text(m, model):
  if model == "gfcf":
    return f"α={m['hparams/alpha']:g}, k={m['hparams/gfcf_vectors']}"
  parts = [f"λ={m['hparams/lam']:g}"]
  if model in ("dlae", "edlae", "rdlae"):
    parts.append(f"p={m['hparams/p']:g}")
  if model in ("rlae", "rdlae"):
    parts.append(f"ξ={m['hparams/xi']:g}")
  return ", ".join(parts)


def _value(m, key):
  value = m.get(key, float("nan"))
  return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def table(dataset):
  normalization = "|test|" if dataset.endswith("_weak") else "min(k, |test|)"
  header = " | ".join(c.replace("_", " ") for c in COLUMNS)
  lines = [f"### {dataset} (Recall normalised by {normalization})", "",
           f"| model | hyperparameters | {header} | solve s | solve path | active ξ columns | "
           "peak RSS GB |", "|---" * (len(COLUMNS) + 6) + "|"]
  for model in MODELS:
    m = load(f"{model}_{dataset}")
    if m is None:
      status = reports.failure(workdir(f"{model}_{dataset}"))
      lines.append(f"| {model} | {status} |" + " |" * (len(COLUMNS) + 4))
      continue
    values = " | ".join(_value(m, "test/" + c) for c in COLUMNS)
    lines.append(f"| {model} | {hyper_text(m, model)} | {values} | {m['time/solve_s']:.1f} | "
                 f"{m['solve/method']}/{m['solve/backend']} | {m['solve/num_active']} | "
                 f"{m['memory/peak_rss_gb']:.1f} |")
  return lines


def search_table(dataset):
  """How each searched model chose: grid, cost, and whether the choice sits on the grid's edge."""
  rows = []
  for model in MODELS[:-1]:
    m, config = load(f"{model}_{dataset}"), load(f"{model}_{dataset}", "config.json")
    if m is None or "time/search_s" not in m or config is None:
      continue
    grid = config["search"]
    axes = [("λ", "lam")] + [("p", "p")] * (model in ("dlae", "edlae", "rdlae")) + \
           [("ξ", "xi")] * (model in ("rlae", "rdlae"))
    edges = [symbol for symbol, key in axes
             if m[f"hparams/{key}"] in (min(grid[key]), max(grid[key])) and len(grid[key]) > 1]
    sizes = " x ".join(f"{len(grid[key])} {symbol}" for symbol, key in axes)
    rows.append(f"| {model} | {sizes} ({m['search/points']} points) | {m['search/solves']} "
                f"{'eigendecomposition' if m['search/route'] == 'eigen' else 'inverses'} | "
                f"{m['time/search_s']:.0f} | {hyper_text(m, model)} | "
                f"{', '.join(edges) if edges else 'no'} |")
  if not rows:
    return []
  return [f"Search on {dataset} (validation NDCG@100; search.jsonl in the archive lists every point):",
          "", "| model | grid | solves | search s | selected | selected on the grid's edge |",
          "|---|---|---|---|---|---|", *rows, ""]


def search_cost():
  """What a full search would cost on gowalla: one timed point, extrapolated to the preset's grid."""
  lines = ["### Searching on gowalla: one point timed, the rest EXTRAPOLATED", "",
           "A `--mode=search` run of RDLAE on gowalla strong was timed at one (λ, p) point with its "
           "whole ξ grid (`launch.py --config=configs/lae.py:rdlae_gowalla_strong --mode=search "
           "--config.search.lam=(70.0,) --config.search.p=(0.5,)`, beside other jobs): one inverse C "
           "(Woodbury) plus 9 validation evaluations. Every model's full-grid time multiplies that by "
           "its preset's number of (λ, p) inverses (an inverse costs the same whatever the "
           "regulariser); these are estimates, not measurements. LAE/EASE/DLAE/EDLAE score 1 ξ per "
           "inverse instead of 9, so theirs are upper bounds; the final refit at the selected point "
           "(one train run, in the tables above) comes on top.", "",
           "| model | timed point | measured s (solves) | preset grid | grid solves | "
           "full search ≈ h (extrapolated) |", "|---|---|---|---|---|---|"]
  m = load("rdlae_gowalla_strong_search_point")
  if m is None or "time/search_s" not in m:
    return []
  per_solve = m["time/search_s"] / m["search/solves"]
  for model in MODELS[:-1]:
    grid = lae_configs.get_config(f"{model}_gowalla_strong").search
    dropout = model in ("dlae", "edlae", "rdlae")
    solves = len(grid.lam) * (len(grid.p) if dropout else 1)
    point = f"rdlae λ={m['hparams/lam']:g}, p={m['hparams/p']:g}, {m['search/points']} ξ"
    lines.append(f"| {model} | {point} | {m['time/search_s']:.0f} "
                 f"({m['search/solves']}) | {len(grid.lam)} λ" + (f" x {len(grid.p)} p" if dropout else "")
                 + f" | {solves} | {per_solve * solves / 3600:.1f} |")
  weak = [load(f"{model}_gowalla_weak") for model in ("ease", "edlae")]
  if all(weak):
    per = [w["time/solve_s"] + w["time/eval_s"] for w in weak]
    grid = lae_configs.get_config("edlae_gowalla_weak").search
    lam, p = len(grid.lam), len(grid.lam) * len(grid.p)
    lines += ["", f"gowalla weak has no validation split (LightGCN's train/test only), so "
              f"`--mode=search` refuses it; the official weak code reports test at the scripts' "
              f"points. Were it searched, one point costs about a train run's solve + evaluation "
              f"({per[0]:.0f} s EASE, {per[1]:.0f} s EDLAE here): {lam} λ ≈ {lam * per[0] / 3600:.1f} h, "
              f"{lam} λ x {len(grid.p)} p ≈ {p * per[1] / 3600:.1f} h (EXTRAPOLATED)."]
  return lines + [""]


def check_runs():
  """(run, reference run, overrides): float64 at ML-1M's selected point, and the direct (dense
  Gram) solve against the default Woodbury one on gowalla."""
  checks = []
  for model in MODELS[:-1]:
    m = load(f"{model}_ml-1m_strong")
    if m is not None:
      checks.append((f"{model}_ml-1m_strong_float64", f"{model}_ml-1m_strong",
                     ["--config.dtype=float64", f"--config.lam={m['hparams/lam']}",
                      f"--config.p={m['hparams/p']}", f"--config.xi={m['hparams/xi']}"]))
  checks.append(("ease_gowalla_strong_direct", "ease_gowalla_strong", ["--config.solve_method=direct"]))
  return checks


def checks_table():
  lines = ["### Numerical checks: the same model and hyperparameters by another path", "",
           "| run | path | recall@20 | ndcg@100 | reference run | recall@20 | ndcg@100 | solve s (check / ref) |",
           "|---|---|---|---|---|---|---|---|"]
  for name, reference, _ in check_runs():
    check, ref = load(name), load(reference)
    if check is None or ref is None:
      lines.append(f"| {name} | pending | | | {reference} |" + " |" * 3)
      continue
    dtype = "float64" if name.endswith("float64") else "float32"
    lines.append(f"| {name} | {check['solve/method']} {dtype} | {check['test/recall@20']:.4f} | "
                 f"{check['test/ndcg@100']:.4f} | {reference} | {ref['test/recall@20']:.4f} | "
                 f"{ref['test/ndcg@100']:.4f} | {check['time/solve_s']:.1f} / {ref['time/solve_s']:.1f} |")
  return lines + [""]


def run_names():
  names = [f"{model}_{dataset}" for dataset, _ in DATASETS for model in MODELS]
  names += [f"{model}_gowalla_strong_search_point" for model in SEARCH_POINTS]
  return names + [name for name, _, _ in check_runs()]


def setup():
  """The Setup block, from the launch.json of every run the report reads."""
  launches = [l for l in (load(name, "launch.json") for name in run_names()) if l]
  lines = ["## Setup", ""]
  if not launches:
    return lines + ["- Machine and load: not recorded (no launch.json in the archive).", ""]
  for key, label in (("hardware", "Hardware"), ("software", "Software")):
    values = sorted({l[key] for l in launches})
    lines.append(f"- {label}: {'; '.join(values)}")
  loads = [l["load_before"][0] for l in launches] + [l["load_after"][0] for l in launches]
  nice = sorted({l.get("nice", 0) for l in launches})
  lines += [f"- Load: {len(launches)} runs, one at a time (niceness {', '.join(map(str, nice))}), "
            f"beside other jobs on the same cores: 1-minute load average {min(loads):.1f}-"
            f"{max(loads):.1f} at their starts and ends (launch.json of each run), so seconds are "
            "upper bounds and vary between rows; "
            "[lae_speed.md](lae_speed.md) times the solve on a quiet machine. float32 unless a row "
            "says float64.", ""]
  return lines


def related():
  """Links to the companion reports beside lae.md, and their plots."""
  lines = ["### Related reports", ""]
  for report, plot, what in RELATED:
    lines.append(f"- [{report}]({report}): {what}.")
  lines.append("")
  for report, plot, what in RELATED:
    if plot:
      lines += [f"![{what}]({plot})", ""]
  return lines


def main(_):
  if _RUN.value:
    datasets = [d for d in DATASETS if not _ONLY.value or d[0] in _ONLY.value]
    order = [d for d in datasets if d[0].startswith("gowalla")]
    for dataset, mode in order:
      for model in MODELS:
        ensure(f"{model}_{dataset}", f"{model}_{dataset}", "train" if model == "gfcf" else mode)
    if any(d == "gowalla_strong" for d, _ in order):
      for model, overrides in SEARCH_POINTS.items():
        ensure(f"{model}_gowalla_strong_search_point", f"{model}_gowalla_strong", "search", *overrides)
    for dataset, mode in [d for d in datasets if d not in order]:
      for model in MODELS:
        ensure(f"{model}_{dataset}", f"{model}_{dataset}", "train" if model == "gfcf" else mode)
    names = [d for d, _ in datasets]
    for name, reference, overrides in check_runs():
      if any(reference.endswith(d) for d in names):
        ensure(name, reference, "train", *overrides)
  for name in run_names():   # finished runs not archived yet (e.g. run by hand)
    if os.path.exists(os.path.join(workdir(name), "metrics.json")):
      archive(workdir(name), archived(name))
  lines = ["# Linear autoencoders on real data", "", *setup(), PROTOCOL]
  for dataset, _ in DATASETS:
    lines += table(dataset) + [""] + search_table(dataset)
  lines += search_cost() + checks_table() + related()
  text = "\n".join(lines)
  print(text)
  reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
