"""SASRec (ID embeddings) runs on real data -> benchmarks/results/seqrec.md and a curve plot.

  python launch.py --config=configs/sasrec.py:amazon_beauty --workdir=runs/sasrec_beauty   # train
  python -m benchmarks.seqrec_results --runs=amazon_beauty:runs/sasrec_beauty,amazon_toys:runs/sasrec_toys

Reads each run's metrics.json (test metrics of the best checkpoint) and metrics.jsonl (one line per
validation) and writes a table of test Recall/NDCG@10/20, best epoch, seconds per epoch and device,
plus seqrec_curves.png (validation NDCG@10 per epoch). Runs still training (no metrics.json) are
listed with their best validation so far. Hand-written notes below the marker are kept.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from recsys_core import plots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_RUNS = flags.DEFINE_list("runs", ["amazon_beauty:runs/sasrec_beauty",
                                   "amazon_toys:runs/sasrec_toys"], "dataset:workdir pairs")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/seqrec.md"), "markdown")


# Where the runs trained; each row's device is in its "device" column.
SETUP = ["## Setup", "",
         "- Hardware: the device of each row is in its \"device\" column; cpu is a 2-core x86-64 CPU "
         "(AMD EPYC) with 24 GiB of memory.",
         "- Software: Python 3.11, jax 0.10.2, flax 0.12.8, optax 0.2.8, numpy 2.4.6 (requirements.txt).",
         "- Load: the runs shared the CPU with other jobs (load 3-7), so s/epoch is an upper bound; "
         "metrics do not depend on load.", ""]


def read_run(workdir: str) -> tuple:
  """(final metrics or None, [validation records])."""
  final = None
  if os.path.exists(os.path.join(workdir, "metrics.json")):
    with open(os.path.join(workdir, "metrics.json")) as f:
      final = json.load(f)
  lines = plots.read_validations(workdir)
  if final is None and not lines:
    raise FileNotFoundError(f"{workdir}: neither metrics.json nor metrics.jsonl; train it with "
                            "python launch.py --config=configs/sasrec.py:<dataset> --workdir=...")
  return final, lines


def row(dataset: str, workdir: str, final, lines) -> str:
  epoch_s = np.mean([r["time/train_s"] for r in lines]) if lines else float("nan")
  best = max(lines, key=lambda r: r["valid/ndcg@10"]) if lines else {}
  if final is None:
    return (f"| {dataset} | training: epoch {lines[-1]['epoch']}, best valid NDCG@10 "
            f"{best['valid/ndcg@10']:.4f} (epoch {best['epoch']}) | | | | | | {epoch_s:.0f} | | "
            f"`{workdir}` |")
  test = [final[f"test/{m}@{k}"] for m in ("recall", "ndcg") for k in (10, 20)]
  return (f"| {dataset} | " + " | ".join(f"{v:.4f}" for v in test)
          + f" | {final['valid/ndcg@10']:.4f} | {final['best/epoch']} / {final['train/epochs']} | "
          f"{epoch_s:.0f} | {final['device']} | `{workdir}` |")


def main(_):
  rows, curves = [], {}
  for pair in _RUNS.value:
    dataset, _, workdir = pair.partition(":")
    final, lines = read_run(os.path.join(ROOT, workdir) if not os.path.isabs(workdir) else workdir)
    rows.append(row(dataset, workdir, final, lines))
    curves[dataset] = lines
  png = os.path.splitext(_OUT.value)[0] + "_curves.png"
  plots.plot_learning_curves(curves, "valid/ndcg@10", png,
                             title="SASRec (ID embeddings), full ranking")
  lines = ["# SASRec (ID embeddings) on real data", "", *SETUP,
           f"Regenerate: `python -m benchmarks.seqrec_results --runs={','.join(_RUNS.value)}` from "
           "each run's metrics.json / metrics.jsonl (train the runs first, see the docstring).",
           "Official settings (configs/sasrec.py): 2 layers, 2 heads, hidden 64, inner 256, dropout "
           ".5 / attention .3, max length 50, batch 256, Adam 1e-3, full-softmax cross-entropy, "
           "leave-one-out, full ranking (history items not masked, as RecBole), early stopping on "
           "validation NDCG@10 with patience 10. Test metrics of the best validation checkpoint.", "",
           "| dataset | test R@10 | test R@20 | test N@10 | test N@20 | valid N@10 | best epoch / "
           "epochs | s/epoch | device | workdir |",
           "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
           f"![validation NDCG@10 per epoch]({os.path.basename(png)})", ""]
  text = "\n".join(lines)
  reports.write_report(_OUT.value, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
