"""Runs GRAM (the CPU preset), its ablations and our SASRec on Amazon Beauty and Toys, and writes
benchmarks/results/gram.md next to the paper's numbers.

  python -m benchmarks.gram_results --runs_dir=runs/gram          # runs what is missing, then the tables
  python -m benchmarks.gram_results --runs_dir=runs/gram --norun  # only rebuild the tables
  python -m benchmarks.gram_results --datasets=synthetic --variants=gram,no_item_prompts \
      --override=--config.num_train_steps=200 --runs_dir=/tmp/gram/runs --out=/tmp/gram/gram.md  # a check

Run from the repository root (launch.py is found next to benchmarks/).

Each run is `python launch.py --config=configs/gram.py:<dataset><suffix> [variant flags]` in a
subprocess with its workdir under runs_dir/<dataset>/<variant> (a killed run resumes when the
script is started again; a failed one is shown with its error line). Variants:
  gram             the preset as it is (our lexical IDs, item prompts, neighbours)
  no_item_prompts  the user prompt alone (the paper's "w/o fine-grained item prompts")
  no_neighbours    item prompts without collaborative neighbours
  random_ids       our IDs permuted over the items (the paper's "w/o semantic IDs": same words and
                   trie, no semantic grouping)
  no_prompt_positions  no prompt-position embeddings in the late fusion
  authors_ids      the authors' released lexical IDs instead of ours
SASRec (configs/sasrec.py:<dataset>, Recall/NDCG at 5, 10, 20) trains on the same leave-one-out
split, in runs_dir/<dataset>/sasrec unless --sasrec_dir names an existing run (a run trained at
other cut-offs gets @5 from `python launch.py --config=configs/sasrec.py:<dataset> --workdir=DIR
--mode=eval --config.ks='(5,10,20)'`, whose eval.json is read too).

Run folders do not travel with the repository, so each finished run's small outputs (metrics,
validation log, config, per-user test metrics; no checkpoints) are copied into runs/gram/ beside the
report (benchmarks/results/runs/gram/), which is committed: a run whose folder is gone is read from
there. A row with no run in --runs_dir nor in the archive is shown as pending.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from configs import gram as gram_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py
VARIANTS = {
    "gram": [],
    "no_item_prompts": ["--config.item_prompts=False"],
    "no_neighbours": ["--config.num_neighbours=0"],
    "random_ids": ["--config.ids.shuffle=True"],
    "no_prompt_positions": ["--config.model.prompt_positions=False"],
    "authors_ids": ["--config.ids.source=authors"],
}
# DESIGN.md: the paper's GRAM (pretrained T5-small, full scale), R@5 / N@5 / R@10 / N@10.
PAPER = {"amazon_beauty": (.0641, .0451, .0890, .0531), "amazon_toys": (.0718, .0516, .0987, .0603),
         "amazon_sports": (.0375, .0256, .0554, .0314)}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/gram", "one sub-folder per dataset and variant")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_DATASETS = flags.DEFINE_list("datasets", ["amazon_beauty", "amazon_toys"], "datasets")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"of {list(VARIANTS)}")
_SUFFIX = flags.DEFINE_string("preset_suffix", "", "'' (the CPU preset) or '_paper'")
_OVERRIDE = flags.DEFINE_multi_string("override", [], "extra launch.py flags for every GRAM run")
_SASREC = flags.DEFINE_bool("sasrec", True, "train (or read) our SASRec on the same split")
_SASREC_DIR = flags.DEFINE_string("sasrec_dir", "", "an existing SASRec run, '{dataset}' replaced "
                                  "(default: runs_dir/<dataset>/sasrec, trained when missing)")
_RUN = flags.DEFINE_bool("run", True, "run what is missing")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/gram.md"), "markdown")
_ARCHIVE = flags.DEFINE_string("archive_dir", None, "committed copies of finished runs' small "
                               "outputs, read where a run folder is gone (default: runs/gram/ "
                               "beside --out)")


def launch(config: str, workdir: str, overrides: list) -> None:
  reports.launch_run([f"--config={config}", f"--config.data_dir={_DATA_DIR.value}",
                      "--config.progress=False", *overrides], workdir)


def sasrec_dir(dataset: str) -> str:
  if _SASREC_DIR.value:
    return _SASREC_DIR.value.replace("{dataset}", dataset)
  return os.path.join(_RUNS_DIR.value, dataset, "sasrec")


def run_dir(dataset: str, name: str) -> str:
  """The folder of a variant's run, or of our SASRec (name "sasrec")."""
  return sasrec_dir(dataset) if name == "sasrec" else os.path.join(_RUNS_DIR.value, dataset, name)


def archived(dataset: str, name: str) -> str:
  root = _ARCHIVE.value or os.path.join(os.path.dirname(os.path.abspath(_OUT.value)), "runs", "gram")
  return os.path.join(root, dataset, name)


def source(dataset: str, name: str) -> str:
  """Where to read a run: its folder when finished, else its archived copy, else its folder."""
  return reports.run_source(run_dir(dataset, name), archived(dataset, name))


def epoch_seconds(workdir: str) -> float:
  """Median training seconds between validations (metrics.jsonl "time/train_s"; one validation
  per epoch in the CPU presets), without the first one (compilation) when there are more; NaN
  without a log."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return float("nan")
  values = [json.loads(line)["time/train_s"] for line in open(path) if line.strip()]
  return float(np.median(values[1:] or values)) if values else float("nan")


def row(label: str, dataset: str, name: str) -> str:
  workdir = source(dataset, name)
  path = os.path.join(workdir, "metrics.json")
  if not os.path.exists(path):
    return f"| {label} | {reports.failure(workdir)} |" + " |" * (len(METRICS) + 4)
  m = json.load(open(path))
  evaluated = os.path.join(workdir, "eval.json")  # --mode=eval of the best checkpoint, e.g. at more ks
  if os.path.exists(evaluated):
    m = {**json.load(open(evaluated)), **m}
  cells = [f"{m['test/' + k]:.4f}" if "test/" + k in m else "–" for k in METRICS]
  params = m.get("model/params")
  return (f"| {label} | " + " | ".join(cells) + f" | {m.get('best/epoch', '–')} / "
          f"{m.get('train/epochs', '–')} | {epoch_seconds(workdir):.0f} | "
          f"{m.get('time/eval_s', float('nan')):.0f} | "
          f"{f'{params / 1e6:.2f}M' if params else '–'} | {m.get('data/vocab_size', '–')} |")


def per_user(workdir: str) -> str:
  return os.path.join(workdir, "test_per_user.npz")


ABLATIONS = {"no_item_prompts": "w/o item prompts", "no_neighbours": "w/o collaborative neighbours",
             "random_ids": "random IDs", "no_prompt_positions": "w/o prompt positions",
             "authors_ids": "the authors' IDs"}


def paired_section(dataset: str) -> list:
  """GRAM minus each variant (and our SASRec) on the same test users, with paired standard errors."""
  reference = per_user(source(dataset, "gram"))
  if "gram" not in _VARIANTS.value:
    return []
  if not os.path.exists(reference):
    return []
  reference = dict(np.load(reference))
  others = {}
  for variant in _VARIANTS.value:
    path = per_user(source(dataset, variant))
    if variant != "gram" and os.path.exists(path):
      other = dict(np.load(path))
      if np.array_equal(other["user"], reference["user"]):
        others[ABLATIONS.get(variant, variant)] = other
  sasrec = per_user(source(dataset, "sasrec"))
  if _SASREC.value and os.path.exists(sasrec):
    sasrec = np.load(sasrec)  # one row per dense user
    others["SASRec (ours)"] = {name: sasrec[name][reference["user"]] for name in sasrec.files}
  rows = reports.paired_table(reference, others, ("recall@10", "ndcg@10"), label="GRAM minus")
  if not rows:
    return []
  return [f"GRAM (CPU preset) minus each variant on {dataset}, paired over the same test users "
          "(± the standard error of the mean per-user difference; z = difference / SE; a "
          "positive difference means the ablated part helped, and in the SASRec row that GRAM is "
          "ahead):", "", *rows, ""]


def table(dataset: str) -> list:
  lines = [f"## {dataset}", "",
           "| run | R@5 | N@5 | R@10 | N@10 | R@20 | N@20 | best / last epoch | s per epoch | "
           "final eval s | parameters | vocabulary |", "|---" * (len(METRICS) + 6) + "|"]
  if dataset in PAPER:
    r5, n5, r10, n10 = PAPER[dataset]
    lines.append(f"| paper: GRAM, pretrained T5-small, full scale | {r5:.4f} | {n5:.4f} | "
                 f"{r10:.4f} | {n10:.4f} | – | – | 30 epochs | – | – | 60M | 32k |")
  for variant in _VARIANTS.value:
    lines.append(row(f"GRAM{_SUFFIX.value or ' CPU preset'}: {variant}", dataset, variant))
  if _SASREC.value:
    lines.append(row("SASRec (ours, configs/sasrec.py)", dataset, "sasrec"))
  return lines


def preset_text(dataset: str) -> str:
  c = gram_configs.get_config(dataset + _SUFFIX.value)
  return (f"`configs/gram.py:{dataset}{_SUFFIX.value}`: T5 `{c.model.size}` from scratch, IDs "
          f"c={c.ids.num_clusters} l={c.ids.depth} ({c.ids.source}, {c.ids.embeddings}), user prompt "
          f"of <= {c.max_his} IDs + the {c.num_fine} most recent items' prompts, {c.prompt_len} tokens "
          f"each, {c.num_neighbours} neighbours ({c.neighbours or 'none'}), batch {c.batch_size}, "
          f"<= {c.epochs} epochs (patience {c.patience}), beam {c.num_beams}, validation on "
          f"{c.valid_users or 'all'} users, prompt buckets {tuple(c.prompt_buckets)}.")


HEADER = """# GRAM on Amazon Beauty and Toys

## Setup

- Hardware: every archived row trained and was evaluated on a 2-core x86-64 CPU (AMD EPYC) with 24 GiB
  of memory (metrics.json "device": cpu).
- Software: Python 3.11, jax 0.10.2, flax 0.12.8, optax 0.2.8, orbax-checkpoint 0.12.8, numpy 2.4.6,
  sentencepiece 0.2.3 (requirements.txt).
- Load: the runs at times shared the 2 cores with other jobs, so the seconds columns are upper bounds;
  the metrics do not depend on load.

Regenerate: `python -m benchmarks.gram_results --runs_dir={runs_dir}{args}` (runs what is missing;
`--norun` rebuilds from the committed archive benchmarks/results/runs/gram/ alone). Each GRAM row is
one `python launch.py --config=configs/gram.py:...` run; its `metrics.json` is the source. A row
marked pending has no finished run in the archive. Test metrics of the best validation checkpoint,
leave-one-out, one target per user (Recall@k = hit@k), all users with >= 3 interactions; GRAM ranks
the items of its constrained beam, SASRec all items.

How far from the paper, and why: the paper fine-tunes a PRETRAINED T5-small (60M parameters, T5's
32k vocabulary) at full scale (20 item prompts + 1 user prompt of 128 tokens each, 10/5
neighbours, beam 50, 30 epochs; about 40 GPU hours). Every model below is trained FROM SCRATCH
(no pretrained weights), and the CPU preset shrinks it further to finish in hours on 2 cores:
{presets}
A from-scratch model has to learn the language of the prompts and IDs from the training prefixes
alone (Beauty 131k, Toys 109k), which is where the paper's pretraining matters most; expect well below
the paper's numbers. `configs/gram.py:<dataset>_paper` is the paper's scale for GPUs/TPUs (and
`--config.model.hf_checkpoint=` loads a Hugging Face T5 v1.0 checkpoint).

"""


def main(_):
  runs_dir = _RUNS_DIR.value
  unknown = [v for v in _VARIANTS.value if v not in VARIANTS]
  if unknown:
    raise app.UsageError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
  if _RUN.value:
    for dataset in _DATASETS.value:
      for variant in _VARIANTS.value:
        workdir = os.path.join(runs_dir, dataset, variant)
        if not os.path.exists(os.path.join(source(dataset, variant), "metrics.json")):
          launch(f"configs/gram.py:{dataset}{_SUFFIX.value}", workdir,
                 VARIANTS[variant] + list(_OVERRIDE.value))
      if _SASREC.value and not os.path.exists(os.path.join(source(dataset, "sasrec"),
                                                           "metrics.json")):
        launch(f"configs/sasrec.py:{dataset}", sasrec_dir(dataset), ["--config.ks=(5,10,20)"])
  for dataset in _DATASETS.value:
    for name in _VARIANTS.value + ["sasrec"] * _SASREC.value:
      if os.path.exists(os.path.join(run_dir(dataset, name), "metrics.json")):
        reports.archive_run(run_dir(dataset, name), archived(dataset, name))
  args = "".join(f" --{name}={value}" for name, value in (
      ("datasets", ",".join(_DATASETS.value)), ("variants", ",".join(_VARIANTS.value)),
      ("preset_suffix", _SUFFIX.value)) if value) + "".join(
          f" --override={o}" for o in _OVERRIDE.value)
  presets = " ".join(preset_text(d) for d in _DATASETS.value)
  lines = []
  for dataset in _DATASETS.value:
    lines += table(dataset) + [""] + paired_section(dataset)
  text = HEADER.format(runs_dir=runs_dir, args=args, presets=presets)
  text += "\n".join(lines)
  print(text)
  reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
