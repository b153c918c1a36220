"""GRAM's compute-scaling curve: the dataset's CPU preset trained at several budgets (model size x
epochs), test NDCG@10 against training FLOPs, next to our SASRec and the paper's GRAM.

  python -m benchmarks.gram_scaling --runs_dir=runs/gram          # runs what is missing, the report
  python -m benchmarks.gram_scaling --runs_dir=runs/gram --norun  # only rebuild the report
  python -m benchmarks.gram_scaling --budgets=tiny_e2,tiny_e10 --sasrec_ndcg10=0.0428 --norun \\
      --out=/tmp/gram_scaling.md                                    # a subset, SASRec given by hand

Run from the repository root (launch.py is found next to benchmarks/).

Budgets (BUDGETS below): each is a set of config overrides on `configs/gram.py:<dataset>` (the CPU
preset), one `python launch.py --config=configs/gram.py:<dataset> <overrides>
--workdir=<runs_dir>/<dataset>/scaling/<budget>` subprocess (a killed run resumes when the script is
started again; a failed one is shown with its error line). Every budget's learning rate follows the
preset's schedule over ITS OWN epochs (linear warmup, then linear decay to 0 at the last step: fully
annealed), and early stopping may end it sooner. All budgets share the tokenizer and lexical IDs
(seeded, so identical): a new budget's folder gets them copied from a sibling that already built
them (gram_data.json, spiece.model, ids.txt) instead of clustering again.

Training FLOPs: XLA's own count. The budget's training batches are built as gram_jax/run.py builds
them (the same tokenizer and IDs, `batching.PromptBatches` of epoch 0); the shared train step
(recsys_core/train.py: forward, backward, clipping and AdamW update) is lowered and compiled once
per distinct batch shape, and `compiled.cost_analysis()["flops"]` (x the devices of the mesh) is
summed over one epoch's batches (batches per shape x FLOPs per shape), then multiplied by the
epochs the run trained (train/steps / batches per epoch of its metrics.json). Padding (weight-0
rows, pad tokens) counts: XLA computes it. Validation and test decoding are not counted. The
per-epoch count is cached in the budget's archive folder (flops.json), so `--norun` compiles
nothing once a run has been counted. A run counted after its folder is gone uses a stand-in
tokenizer and IDs built from bag-of-words embeddings in <runs_dir>/<dataset>/scaling/_flops_ids
(same vocabulary size and shapes in practice; its rows are marked).

Report (--out, default benchmarks/results/gram_scaling.md, and a PNG beside it): per budget its
parameters, epochs, training FLOPs and test NDCG@10 / Recall@10; the plot of test NDCG@10 against
training FLOPs (log x) with our SASRec's test NDCG@10 (its archived run, else --sasrec_ndcg10) and
the paper's GRAM as horizontal lines, and the least-squares line NDCG@10 = a + b log10(FLOPs) over
the finished budgets, dashed beyond the last one and labelled as an extrapolation; the FLOPs at
which that line would reach SASRec and the paper are stated as an extrapolation ("never" when
b <= 0).

Finished runs' small outputs are copied into
benchmarks/results/runs/gram/<dataset>/scaling/<budget>/ (`reports.archive_run`), which is
committed: a run whose folder is gone is read from there. A budget with no run in --runs_dir nor
in the archive is shown as pending.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from typing import Any, Mapping, Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from configs import gram as gram_configs
from recsys_core import records
from recsys_core.errors import RecsysError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py

# Budget name -> config overrides on the dataset's CPU preset (dotted keys of configs/gram.py).
# Sizes: the tiny T5 layout of gram_jax/t5.py (2 + 2 layers, 4 heads, d_ff = 4 d_model,
# heads x d_kv = d_model) at d_model 64 (tiny itself, 0.74M parameters with the 8k vocabulary), 128
# and 256; epochs 2 (the preset) and 10. The 10-epoch budgets get patience 3 (the preset's 2 was
# chosen for 2 epochs): validation on the 2,000-user sample is noisy, and patience 2 could stop a
# 10-epoch schedule before its learning rate has decayed.
BUDGETS = {
    "tiny_e2": {"model.size": "tiny", "epochs": 2},
    "tiny_e10": {"model.size": "tiny", "epochs": 10, "patience": 3},
    "d128_e10": {"model.size": "tiny", "model.d_model": 128, "model.d_kv": 32, "model.d_ff": 512,
                 "epochs": 10, "patience": 3},
    "d256_e10": {"model.size": "tiny", "model.d_model": 256, "model.d_kv": 64, "model.d_ff": 1024,
                 "epochs": 10, "patience": 3},
}
# The paper's GRAM test NDCG@10 (pretrained T5-small, full scale; benchmarks/gram_results.py PAPER).
PAPER_NDCG10 = {"amazon_beauty": .0531, "amazon_toys": .0603, "amazon_sports": .0314}
# Where our SASRec's run may be (first with a metrics.json wins): benchmarks/gram_results.py's
# archived SASRec on the same split, its run folder, and benchmarks/seqrec_results.py's default
# runs.
SASREC_RUNS = ("benchmarks/results/runs/gram/{dataset}/sasrec", "runs/gram/{dataset}/sasrec",
               "runs/sasrec_{short}")
FLOPS_FILE = "flops.json"
ID_FILES = ("gram_data.json", "spiece.model", "ids.txt")  # what tokenizer_and_ids builds and reuses

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/gram", "runs go to <runs_dir>/<dataset>/scaling/")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_DATASET = flags.DEFINE_string("dataset", "amazon_beauty", "configs/gram.py CPU preset")
_BUDGETS = flags.DEFINE_list("budgets", list(BUDGETS), f"of {list(BUDGETS)}")
_RUN = flags.DEFINE_bool("run", True, "run what is missing (--norun: only the report)")
_SASREC_DIR = flags.DEFINE_string("sasrec_dir", "", "our SASRec's run folder ('{dataset}' "
                                  "replaced; default: the first of SASREC_RUNS that is finished)")
_SASREC_NDCG = flags.DEFINE_float("sasrec_ndcg10", None, "our SASRec's test NDCG@10 when no run "
                                  "is found")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/gram_scaling.md"),
                           "markdown report (the PNG is written beside it, same name)")
_ARCHIVE = flags.DEFINE_string("archive_dir", None, "committed copies of finished runs' small "
                               "outputs (default: runs/gram/ beside --out)")


# --- pure helpers (tests/test_gram_scaling.py) --------------------------------------------------

def override_flags(overrides: Mapping[str, Any]) -> list:
  """launch.py flags of a budget: {"model.d_model": 128} -> ["--config.model.d_model=128"]."""
  return [f"--config.{key}={str(value).replace(' ', '')}" for key, value in overrides.items()]


def flops_of(cost: Any) -> float:
  """The "flops" of `compiled.cost_analysis()`: a dict (recent jax) or a list of dicts (older jax,
  one per computation; summed)."""
  if isinstance(cost, Mapping):
    cost = [cost]
  values = [float(c["flops"]) for c in cost or () if c and "flops" in c]
  if not values or sum(values) <= 0:
    raise ValueError(f"cost_analysis() holds no positive 'flops': {cost!r}")
  return sum(values)


def epoch_flops(counts: Mapping[str, int], flops_per_batch: Mapping[str, float]) -> float:
  """FLOPs of one epoch: sum over batch shapes of (batches of that shape) x (FLOPs of one step)."""
  return float(sum(n * flops_per_batch[shape] for shape, n in counts.items()))


def epochs_trained(metrics: Mapping[str, Any], validations: Sequence[Mapping] = ()) -> float:
  """Epochs a run trained: train/steps / data/batches_per_epoch of its metrics.json (exact, also
  for a run stopped mid-epoch), else its train/epochs, else the last "epoch" of metrics.jsonl;
  NaN when none is known."""
  steps, per_epoch = metrics.get("train/steps"), metrics.get("data/batches_per_epoch")
  if steps is not None and per_epoch:
    return steps / per_epoch
  if metrics.get("train/epochs") is not None:
    return float(metrics["train/epochs"])
  epochs = [r["epoch"] for r in validations if "epoch" in r]
  return float(epochs[-1]) if epochs else float("nan")


def training_flops(per_epoch: float, epochs: float) -> float:
  return per_epoch * epochs


def fit_log_linear(flops: Sequence[float], values: Sequence[float]) -> tuple:
  """(a, b) of the least-squares line values = a + b log10(flops) (>= 2 distinct FLOPs)."""
  x = np.log10(np.asarray(flops, np.float64))
  if len(x) < 2 or np.ptp(x) == 0:
    raise ValueError("a line needs at least two distinct FLOPs")
  b, a = np.polyfit(x, np.asarray(values, np.float64), 1)
  return float(a), float(b)


def crossing_flops(a: float, b: float, target: float) -> Optional[float]:
  """The FLOPs at which a + b log10(FLOPs) = target; None ("never") when b <= 0."""
  if b <= 0:
    return None
  return float(10 ** ((target - a) / b))


def format_flops(x: Optional[float]) -> str:
  if x is None or not math.isfinite(x):
    return "–"
  return f"{x:.2e}".replace("e+", "e")


def shape_name(batch: Mapping[str, Any]) -> str:
  """A batch's shapes as a key: "input_ids=64x4x64,labels=64x8,weights=64"."""
  return ",".join(f"{k}={'x'.join(map(str, np.shape(v)))}" for k, v in sorted(batch.items()))


# --- FLOPs of a budget (XLA's count) ------------------------------------------------------------

def budget_config(dataset: str, overrides: Mapping[str, Any], data_dir: str):
  config = gram_configs.get_config(dataset)
  config.update_from_flattened_dict(dict(overrides))
  config.data_dir = data_dir
  config.progress = False
  return config


def epoch_shapes(batches, epoch: int = 0) -> tuple:
  """({shape: batches of that shape in the epoch}, {shape: one host batch of it}) of a
  `PromptBatches`. Without distinct prompts a batch's shape is its bucket's, so only one batch per
  bucket is built; with them the whole epoch is (U varies per batch)."""
  counts, samples = {}, {}
  plan = batches.plan(epoch)
  if batches.distinct_prompts:
    for batch in batches.epoch(epoch):
      key = shape_name(batch)
      counts[key] = counts.get(key, 0) + 1
      samples.setdefault(key, batch)
    return counts, samples
  first = {}
  for position, (bucket, _) in enumerate(plan):
    first.setdefault(bucket, position)
  by_bucket = {}
  for bucket, position in first.items():
    batch = next(batches.epoch(epoch, position))
    by_bucket[bucket] = shape_name(batch)
    samples[by_bucket[bucket]] = batch
  for bucket, _ in plan:
    counts[by_bucket[bucket]] = counts.get(by_bucket[bucket], 0) + 1
  return counts, samples


def measure_flops(config, workdir: str) -> dict:
  """XLA's FLOPs of one training epoch of `config`, with the tokenizer and IDs of `workdir` (built
  there when it has none): {"flops_per_epoch", "batches_per_epoch", "shapes": [{"shape",
  "batches", "flops"}], "params", "vocab_size", "devices", "backend", "jax"}."""
  import jax  # pylint: disable=import-outside-toplevel
  from gram_jax import batching  # pylint: disable=import-outside-toplevel
  from gram_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  from gram_jax import loss  # pylint: disable=import-outside-toplevel
  from gram_jax import run as gram_run  # pylint: disable=import-outside-toplevel
  from recsys_core import readers  # pylint: disable=import-outside-toplevel
  from recsys_core import train  # pylint: disable=import-outside-toplevel

  os.makedirs(workdir, exist_ok=True)
  ds = readers.load_dataset(config.dataset, config.data_dir)
  tokenizer, _, _, tables = gram_run.prompt_tables(config, ds, workdir)
  vocab_size = tokenizer.vocab_size
  model, params = gram_run.build_model(config, vocab_size)
  examples = data_lib.train_examples(ds, tables, config.max_his, config.item_prompts)
  batches = batching.PromptBatches(
      examples, config.batch_size, config.seed, config.num_fine, config.prompt_buckets,
      config.group_prefixes, config.distinct_prompts,
      num_groups=config.num_devices or jax.device_count())
  optimizer = gram_run.build_optimizer(config, config.epochs * batches.num_batches)
  mesh = train.make_mesh(jax.devices()[:config.num_devices] if config.num_devices else None)
  step = train.make_train_step(lambda p, b, rng: loss.seq2seq_loss(model, p, b, rng), optimizer,
                               mesh)
  state = train.replicate(train.create_state(params, optimizer, config.seed), mesh)
  counts, samples = epoch_shapes(batches)
  per_batch = {}
  for key, batch in samples.items():
    compiled = step.lower(state, train.global_batch(batch, mesh)).compile()
    per_batch[key] = flops_of(compiled.cost_analysis()) * mesh.size  # per-device program x devices
  return {"flops_per_epoch": epoch_flops(counts, per_batch),
          "batches_per_epoch": batches.num_batches,
          "shapes": [{"shape": k, "batches": counts[k], "flops": per_batch[k]} for k in counts],
          "params": int(sum(x.size for x in jax.tree.leaves(params))),
          "vocab_size": vocab_size, "devices": mesh.size,
          "backend": jax.default_backend(), "jax": jax.__version__}


def has_ids(folder: str) -> bool:
  return all(os.path.exists(os.path.join(folder, name)) for name in ID_FILES)


def shares_ids(overrides: Mapping[str, Any]) -> bool:
  """Whether a budget keeps the preset's tokenizer and IDs (no ids.* / tokenizer.* override)."""
  return not any(k.startswith(("ids.", "tokenizer.")) for k in overrides)


def seed_ids(workdir: str, siblings: Sequence[str]) -> None:
  """Copy the tokenizer and IDs of the first sibling run that built them into a new `workdir`
  (tokenizer_and_ids reuses them after checking gram_data.json)."""
  if has_ids(workdir):
    return
  for sibling in siblings:
    if sibling != workdir and has_ids(sibling):
      os.makedirs(workdir, exist_ok=True)
      for name in ID_FILES:
        if not os.path.exists(os.path.join(workdir, name)):
          shutil.copy(os.path.join(sibling, name), os.path.join(workdir, name))
      return


def read_flops(archive: str, overrides: Mapping[str, Any]) -> Optional[dict]:
  """The cached per-epoch count of a budget, None when absent or made for other overrides."""
  path = os.path.join(archive, FLOPS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cached = json.load(f)
  return cached if cached.get("overrides") == dict(overrides) else None


def ensure_flops(dataset: str, budget: str, overrides: Mapping[str, Any], workdir: str,
                 archive: str, runs_dir: str, data_dir: str) -> dict:
  """The budget's cached count, or XLA's count now (with the run's own tokenizer and IDs when its
  folder holds them, else the bag-of-words stand-in), written to the archive folder."""
  cached = read_flops(archive, overrides)
  if cached is not None:
    return cached
  config = budget_config(dataset, overrides, data_dir)
  if has_ids(workdir):
    folder, ids = workdir, "the run's own"
  else:
    config.ids.embeddings = "bow"
    folder, ids = os.path.join(runs_dir, dataset, "scaling", "_flops_ids"), "bag-of-words stand-in"
  print(f"{budget}: counting training FLOPs (compiling the train step per batch shape)", flush=True)
  start = time.perf_counter()
  counted = {"budget": budget, "dataset": dataset, "overrides": dict(overrides), "ids": ids,
             **measure_flops(config, folder)}
  print(f"  {format_flops(counted['flops_per_epoch'])} FLOPs per epoch "
        f"({time.perf_counter() - start:.0f}s)", flush=True)
  records.write_json(os.path.join(archive, FLOPS_FILE), counted)
  return counted


# --- runs and rows ------------------------------------------------------------------------------

def launch(dataset: str, overrides: Mapping[str, Any], workdir: str, data_dir: str) -> None:
  reports.launch_run([f"--config=configs/gram.py:{dataset}", f"--config.data_dir={data_dir}",
                      "--config.progress=False", *override_flags(overrides)], workdir)


def collect(budget: str, overrides: Mapping[str, Any], workdir: str, archive: str) -> dict:
  """One budget's row: {"budget", "overrides", "status"} and, when finished, "metrics",
  "epochs", "flops" (its cache, None when not counted) and "training_flops"."""
  source = reports.run_source(workdir, archive)
  row = {"budget": budget, "overrides": dict(overrides), "status": reports.failure(source)}
  path = os.path.join(source, "metrics.json")
  if not os.path.exists(path):
    return row
  with open(path) as f:
    metrics = json.load(f)
  validations = []
  if os.path.exists(os.path.join(source, "metrics.jsonl")):
    with open(os.path.join(source, "metrics.jsonl")) as f:
      validations = [json.loads(line) for line in f if line.strip()]
  cached = read_flops(archive, overrides)
  epochs = epochs_trained(metrics, validations)
  row.update(status="finished", metrics=metrics, epochs=epochs, flops=cached,
             training_flops=training_flops(cached["flops_per_epoch"], epochs) if cached else None)
  return row


def sasrec_value(dataset: str, sasrec_dir: str, flag_value: Optional[float]) -> tuple:
  """(our SASRec's test NDCG@10 or None, where it came from)."""
  short = dataset.split("_", 1)[-1]
  candidates = [sasrec_dir] if sasrec_dir else list(SASREC_RUNS)
  for candidate in candidates:
    folder = candidate.format(dataset=dataset, short=short)
    folder = folder if os.path.isabs(folder) else os.path.join(ROOT, folder)
    path = os.path.join(folder, "metrics.json")
    if os.path.exists(path):
      with open(path) as f:
        value = json.load(f).get("test/ndcg@10")
      if value is not None:
        return float(value), f"the archived run `{os.path.relpath(folder, ROOT)}` (metrics.json)"
  if flag_value is not None:
    return float(flag_value), "given by hand (`--sasrec_ndcg10`; no SASRec run was found)"
  return None, "none: no SASRec run was found and `--sasrec_ndcg10` was not given"


# --- report -------------------------------------------------------------------------------------

def table(rows: Sequence[dict]) -> list:
  lines = ["| budget | overrides | parameters | epochs trained / best epoch | FLOPs / epoch | "
           "training FLOPs | test NDCG@10 | test Recall@10 |", "|---" * 8 + "|"]
  for row in rows:
    overrides = " ".join(f"`{o[len('--config.'):]}`" for o in override_flags(row["overrides"]))
    if row["status"] != "finished":
      lines.append(f"| {row['budget']} | {overrides} | {row['status']} | | | | | |")
      continue
    m, cached = row["metrics"], row["flops"]
    params = m.get("model/params") or (cached or {}).get("params")
    mark = "≈" if cached and cached.get("ids") != "the run's own" else ""
    epochs = f"{row['epochs']:g}" if math.isfinite(row["epochs"]) else "–"
    lines.append(
        f"| {row['budget']} | {overrides} | {f'{params / 1e6:.2f}M' if params else '–'} | "
        f"{epochs} / {m.get('best/epoch', '–')} | "
        f"{mark}{format_flops(cached['flops_per_epoch']) if cached else 'not counted'} | "
        f"{mark}{format_flops(row['training_flops'])} | "
        f"{m.get('test/ndcg@10', float('nan')):.4f} | "
        f"{m.get('test/recall@10', float('nan')):.4f} |")
  return lines


def points(rows: Sequence[dict]) -> list:
  """(budget, training FLOPs, test NDCG@10) of the finished, counted budgets, by FLOPs."""
  out = [(r["budget"], r["training_flops"], r["metrics"]["test/ndcg@10"]) for r in rows
         if r["status"] == "finished" and r["training_flops"] and "test/ndcg@10" in r["metrics"]]
  return sorted(out, key=lambda p: p[1])


def extrapolation(pts: Sequence[tuple], targets: Mapping[str, float]) -> tuple:
  """((a, b) or None, markdown lines): where the fitted line would reach each target."""
  if len({p[1] for p in pts}) < 2:
    return None, [f"Extrapolation: none yet ({len(pts)} finished budget(s) with a FLOPs count; "
                  "the line needs at least 2)."]
  a, b = fit_log_linear([p[1] for p in pts], [p[2] for p in pts])
  last = max(p[1] for p in pts)
  lines = [f"**Extrapolation, not a measurement**: the least-squares line through the {len(pts)} "
           f"finished budgets, test NDCG@10 = {a:.4f} {'+' if b >= 0 else '−'} {abs(b):.4f} · "
           f"log10(training FLOPs), continued beyond the largest budget "
           f"({format_flops(last)} FLOPs), would reach"]
  for label, target in targets.items():
    cross = crossing_flops(a, b, target)
    if cross is None:
      where = "never (the fitted slope is not positive)"
    elif cross <= last:
      where = f"{format_flops(cross)} FLOPs (within the measured range)"
    else:
      where = (f"{format_flops(cross)} FLOPs, {f'{cross / last:.3g}'.replace('e+', 'e')}x the "
               "largest budget")
    lines.append(f"- {label} ({target:.4f}): {where};")
  lines.append(f"extrapolated from {len(pts)} points, assuming the log-linear trend holds that far "
               "(a from-scratch model at a fixed data set may saturate long before).")
  return (a, b), lines


def plot(pts: Sequence[tuple], fit: Optional[tuple], lines: Mapping[str, float], path: str,
         title: str) -> str:
  """Test NDCG@10 against training FLOPs (log x), horizontal reference lines, the fit dashed
  beyond the last point."""
  from recsys_core.plots import plt, save  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  xs = np.array([p[1] for p in pts])
  ax.plot(xs, [p[2] for p in pts], "o", color="C0", label="GRAM (CPU preset budgets)")
  for name, x, y in pts:
    ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
  right = xs.max() * 10
  if fit is not None:
    a, b = fit
    crossings = [c for c in (crossing_flops(a, b, t) for t in lines.values()) if c is not None]
    right = min(max([xs.max() * 10] + [c * 2 for c in crossings]), xs.max() * 1e6)
    inside = np.geomspace(xs.min(), xs.max(), 50)
    beyond = np.geomspace(xs.max(), right, 50)
    ax.plot(inside, a + b * np.log10(inside), "-", color="C0", alpha=.5, label="log-linear fit")
    ax.plot(beyond, a + b * np.log10(beyond), "--", color="C0", alpha=.7, label="extrapolation")
  for (label, value), color in zip(lines.items(), ("C1", "C2")):
    ax.axhline(value, color=color, linestyle=":", label=f"{label} {value:.4f}")
  ax.set_xscale("log")
  ax.set_xlim(xs.min() / 2, right)
  ax.set_xlabel("training FLOPs (XLA cost analysis of the train step)")
  ax.set_ylabel("test NDCG@10")
  ax.set_title(title)
  ax.grid(alpha=.3, which="both")
  ax.legend(fontsize=7)
  return save(fig, path)


def report(dataset: str, rows: Sequence[dict], sasrec: tuple, command: str, png: str,
           setup: Sequence[str]) -> str:
  """The markdown report (writes the PNG when a budget has finished)."""
  value, where = sasrec
  targets = {}
  if value is not None:
    targets["our SASRec"] = value
  if dataset in PAPER_NDCG10:
    targets["the paper's GRAM"] = PAPER_NDCG10[dataset]
  pts = points(rows)
  fit, fit_lines = extrapolation(pts, targets)
  preset = gram_configs.get_config(dataset)
  backends = sorted({f"{r['flops']['backend']} ({r['flops']['ids']} IDs)" for r in rows
                     if r.get("flops")})
  devices = sorted({str(r["metrics"].get("device", "?")) for r in rows if r.get("metrics")})
  lines = [f"# GRAM compute scaling on {dataset}", "", *setup[:-1],
           f"- Runs: trained on {', '.join(devices) or '–'} (metrics.json \"device\"); FLOPs "
           f"counted on {', '.join(backends) or '–'}.", "",
           f"Regenerate: `{command}` (runs what is missing; `--norun` rebuilds from the committed "
           f"archive benchmarks/results/runs/gram/{dataset}/scaling/ alone).", "",
           f"Each budget is `python launch.py --config=configs/gram.py:{dataset}` with the "
           f"overrides below (the preset: T5 `{preset.model.size}` from scratch, batch "
           f"{preset.batch_size}, "
           f"learning rate {preset.learning_rate:g} with linear warmup and linear decay to 0 over "
           f"the budget's epochs, patience {preset.patience} unless overridden). Training FLOPs = "
           "XLA's count for the compiled train step (forward, backward, clipping, AdamW; "
           "`compiled.cost_analysis()`) summed over one epoch's batch shapes, times the epochs "
           "trained (steps / batches per epoch); validation and test decoding are not counted; "
           "≈: counted with stand-in IDs after the run folder was gone. Test metrics of the best "
           "validation checkpoint, leave-one-out, GRAM ranking the items of its constrained beam. "
           "A budget marked pending has no finished run in the archive.", "",
           *table(rows), "",
           f"Our SASRec's test NDCG@10: {f'{value:.4f}' if value is not None else '–'} (source: "
           f"{where}). The paper's GRAM (pretrained T5-small, full scale): "
           f"{PAPER_NDCG10.get(dataset, float('nan')):.4f}.", "", *fit_lines, ""]
  if pts:
    plot(pts, fit, targets, png, f"GRAM on {dataset}: test NDCG@10 against training FLOPs")
    lines += [f"![test NDCG@10 against training FLOPs]({os.path.basename(png)})", ""]
  else:
    lines += ["No finished budget with a FLOPs count yet: no plot.", ""]
  return "\n".join(lines)


def main(_):
  dataset, runs_dir = _DATASET.value, _RUNS_DIR.value
  unknown = [b for b in _BUDGETS.value if b not in BUDGETS]
  if unknown:
    raise app.UsageError(f"unknown budgets {unknown}; choose from {list(BUDGETS)}")
  archive_root = _ARCHIVE.value or os.path.join(os.path.dirname(os.path.abspath(_OUT.value)),
                                                "runs", "gram")
  workdir = lambda b: os.path.join(runs_dir, dataset, "scaling", b)
  archived = lambda b: os.path.join(archive_root, dataset, "scaling", b)
  load_before = os.getloadavg()
  for budget in _BUDGETS.value:
    overrides = BUDGETS[budget]
    finished = os.path.exists(os.path.join(reports.run_source(workdir(budget), archived(budget)),
                                           "metrics.json"))
    if _RUN.value and not finished:
      if shares_ids(overrides):
        seed_ids(workdir(budget), [workdir(b) for b in BUDGETS if shares_ids(BUDGETS[b])])
      launch(dataset, overrides, workdir(budget), _DATA_DIR.value)
    if os.path.exists(os.path.join(workdir(budget), "metrics.json")):
      reports.archive_run(workdir(budget), archived(budget))
    if os.path.exists(os.path.join(archived(budget), "metrics.json")):
      try:
        ensure_flops(dataset, budget, overrides, workdir(budget), archived(budget), runs_dir,
                     _DATA_DIR.value)
      except (OSError, RecsysError) as e:  # e.g. no data here: the row says "not counted"
        print(f"{budget}: FLOPs not counted: {e}", flush=True)
  rows = [collect(b, BUDGETS[b], workdir(b), archived(b)) for b in _BUDGETS.value]
  sasrec = sasrec_value(dataset, _SASREC_DIR.value, _SASREC_NDCG.value)
  args = "".join(f" --{name}={value}" for name, value in (
      ("dataset", dataset), ("budgets", ",".join(_BUDGETS.value)), ("runs_dir", runs_dir),
      ("sasrec_dir", _SASREC_DIR.value), ("sasrec_ndcg10", _SASREC_NDCG.value)) if value)
  command = f"python -m benchmarks.gram_scaling{args}"
  png = os.path.splitext(_OUT.value)[0] + ".png"
  text = report(dataset, rows, sasrec, command, png,
                reports.setup_block(load_before, os.getloadavg()))
  print(text)
  reports.write_report(_OUT.value, text)


if __name__ == "__main__":
  app.run(main)
