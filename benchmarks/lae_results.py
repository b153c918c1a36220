"""Runs every LAE-family model on the real datasets and writes benchmarks/results/lae.md.

  python benchmarks/lae_results.py --runs_dir=runs/lae            # runs what is missing, then the table
  python benchmarks/lae_results.py --runs_dir=runs/lae --norun    # only rebuild the table

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("lae", "ease", "rlae", "dlae", "edlae", "rdlae")
DATASETS = (("gowalla_strong", "train"), ("gowalla_weak", "train"), ("ml-100k_strong", "search"),
            ("ml-1m_strong", "search"))
COLUMNS = ("recall@20", "recall@50", "ndcg@20", "ndcg@100", "head_recall@20", "tail_recall@20")

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/lae", "one sub-folder per preset")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_RUN = flags.DEFINE_bool("run", True, "run the presets whose metrics.json is missing")
_ONLY = flags.DEFINE_list("only", [], "restrict to these datasets")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/lae.md"), "markdown output")


def run_preset(preset, mode, workdir):
  command = [sys.executable, "launch.py", f"--config=configs/lae.py:{preset}", f"--workdir={workdir}",
             f"--mode={mode}", f"--config.data_dir={_DATA_DIR.value}", "--config.progress=False"]
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
  lines = []
  for dataset, _ in DATASETS:
    lines += table(dataset, runs_dir) + [""]
  text = "\n".join(lines)
  print(text)
  with open(_OUT.value + ".tables", "w") as f:
    f.write(text)


if __name__ == "__main__":
  app.run(main)
