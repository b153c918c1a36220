"""Runs every LAE-family model on the real datasets and writes benchmarks/results/lae.md.

  python -m benchmarks.lae_results --runs_dir=runs/lae            # runs what is missing, then the table
  python -m benchmarks.lae_results --runs_dir=runs/lae --norun    # only rebuild the table

gowalla runs use the paper's hyperparameters (configs/lae.py); MovieLens runs use --mode=search.
Each run is `python launch.py ...` in a subprocess, so its peak RSS is its own.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from benchmarks import reports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py
MODELS = ("lae", "ease", "rlae", "dlae", "edlae", "rdlae")
DATASETS = (("gowalla_strong", "train"), ("gowalla_weak", "train"), ("ml-100k_strong", "search"),
            ("ml-1m_strong", "search"))
COLUMNS = ("recall@20", "recall@50", "ndcg@20", "ndcg@100", "head_recall@20", "tail_recall@20")

HEADER = """# Linear autoencoders on real data

## Setup

- Hardware: a 2-core x86-64 CPU (AMD EPYC) with 24 GiB of memory; jax's CPU backend, LAPACK inverse.
- Software: Python 3.11, jax 0.10.2, numpy 2.4.6, scipy 1.17.1 (requirements.txt); float32 unless a
  row says float64.
- Load: the runs shared the 2 cores with other jobs, so solve seconds are upper bounds;
  [lae_speed.md](lae_speed.md) times the solve on a quiet machine.

Regenerate: `python -m benchmarks.lae_results --runs_dir=runs/lae` (runs every missing preset, then the
tables; `--norun` only rebuilds them). Each row is one
`python launch.py --config=configs/lae.py:<model>_<dataset>` run; its `metrics.json` is the source.

- gowalla: the paper's best hyperparameters (official run scripts), no search. MovieLens: `--mode=search`
  over lambda in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000), p in (.1, .3, .5, .7), xi in (.1, .2, .3, .4, .5),
  selected on validation NDCG@100, test reported at the selected point.
- Recall@k is divided by min(k, |test|) (strong) or |test| (weak, LightGCN); NDCG@k's ideal DCG covers
  min(k, |test|) items; head = the ceil(20%) items with the most training users; head/tail metrics
  average over users with >= 1 test item in the group. Fold-in (seen) items are never ranked.
- Solve path: `woodbury` inverts the users x users system (fewer users than items), `woodbury-rows`
  additionally scores the training users straight from the Woodbury factors (weak generalization),
  `direct` inverts the dense items x items Gram matrix.

"""

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/lae", "one sub-folder per preset")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_RUN = flags.DEFINE_bool("run", True, "run the presets whose metrics.json is missing")
_ONLY = flags.DEFINE_list("only", [], "restrict to these datasets")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/lae.md"), "markdown output")


def run_preset(preset, mode, workdir, *overrides):
  command = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config=configs/lae.py:{preset}",
             f"--workdir={workdir}", f"--mode={mode}", f"--config.data_dir={_DATA_DIR.value}",
             "--config.progress=False", *overrides]
  print(" ".join(command), flush=True)
  start = time.perf_counter()
  with open(os.path.join(workdir, "log.txt"), "w") as log:
    code = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  print(f"  exit {code} after {time.perf_counter() - start:.0f}s", flush=True)


def hyper_text(m, model):
  parts = [f"λ={m['hparams/lam']:g}"]
  if model in ("dlae", "edlae", "rdlae"):
    parts.append(f"p={m['hparams/p']:g}")
  if model in ("rlae", "rdlae"):
    parts.append(f"ξ={m['hparams/xi']:g}")
  return ", ".join(parts)


def table(dataset, runs_dir):
  normalization = "|test|" if dataset == "gowalla_weak" else "min(k, |test|)"
  lines = [f"### {dataset} (Recall normalised by {normalization})", "",
           "| model | hyperparameters | " + " | ".join(c.replace("_", " ") for c in COLUMNS) +
           " | solve s | solve path | active ξ columns | peak RSS GB |",
           "|---" * (len(COLUMNS) + 6) + "|"]
  for model in MODELS:
    path = os.path.join(runs_dir, f"{model}_{dataset}", "metrics.json")
    if not os.path.exists(path):
      lines.append(f"| {model} | not run |" + " |" * (len(COLUMNS) + 4))
      continue
    m = json.load(open(path))
    values = " | ".join(f"{m.get('test/' + c, float('nan')):.4f}" for c in COLUMNS)
    lines.append(f"| {model} | {hyper_text(m, model)} | {values} | {m['time/solve_s']:.1f} | "
                 f"{m['solve/method']}/{m['solve/backend']} | {m['solve/num_active']} | "
                 f"{m['memory/peak_rss_gb']:.1f} |")
  return lines


def _check_runs(runs_dir):
  """(name, reference run, extra overrides): float64 at ML-1M's selected point, and the direct
  (dense Gram) solve against the default Woodbury one on gowalla."""
  checks = []
  for model in MODELS:
    selected = os.path.join(runs_dir, f"{model}_ml-1m_strong", "metrics.json")
    if os.path.exists(selected):
      m = json.load(open(selected))
      checks.append((f"{model}_ml-1m_strong", f"{model}_ml-1m_strong_float64",
                     ["--config.dtype=float64", f"--config.lam={m['hparams/lam']}",
                      f"--config.p={m['hparams/p']}", f"--config.xi={m['hparams/xi']}"]))
  checks.append(("ease_gowalla_strong", "ease_gowalla_strong_direct", ["--config.solve_method=direct"]))
  return checks


def run_checks(runs_dir, datasets):
  for preset, name, overrides in _check_runs(runs_dir):
    if not any(preset.endswith(d) for d in datasets):
      continue
    workdir = os.path.join(runs_dir, name)
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
      os.makedirs(workdir, exist_ok=True)
      run_preset(preset, "train", workdir, *overrides)


def checks_table(runs_dir):
  lines = ["### Numerical checks: the same model and hyperparameters by another path", "",
           "| run | path | recall@20 | ndcg@100 | reference run | recall@20 | ndcg@100 | solve s (check / ref) |",
           "|---|---|---|---|---|---|---|---|"]
  for preset, name, _ in _check_runs(runs_dir):
    paths = [os.path.join(runs_dir, r, "metrics.json") for r in (name, preset)]
    if not all(os.path.exists(p) for p in paths):
      continue
    check, ref = (json.load(open(p)) for p in paths)
    dtype = "float64" if name.endswith("float64") else "float32"
    lines.append(f"| {name} | {check['solve/method']} {dtype} | {check['test/recall@20']:.4f} | "
                 f"{check['test/ndcg@100']:.4f} | {preset} | {ref['test/recall@20']:.4f} | "
                 f"{ref['test/ndcg@100']:.4f} | {check['time/solve_s']:.1f} / {ref['time/solve_s']:.1f} |")
  return lines


def main(_):
  runs_dir = os.path.abspath(_RUNS_DIR.value)
  datasets = [d for d in DATASETS if not _ONLY.value or d[0] in _ONLY.value]
  if _RUN.value:
    for dataset, mode in datasets:
      for model in MODELS:
        workdir = os.path.join(runs_dir, f"{model}_{dataset}")
        if not os.path.exists(os.path.join(workdir, "metrics.json")):
          os.makedirs(workdir, exist_ok=True)
          run_preset(f"{model}_{dataset}", mode, workdir)
    run_checks(runs_dir, [d for d, _ in datasets])
  lines = []
  for dataset, _ in DATASETS:
    lines += table(dataset, runs_dir) + [""]
  lines += checks_table(runs_dir)
  text = HEADER + "\n".join(lines) + "\n"
  print(text)
  reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
