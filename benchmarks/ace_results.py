"""Runs every initialiser x extractor x seed of configs/ace.py and writes benchmarks/results/ace.md.

  python -m benchmarks.ace_results --runs_dir=runs/ace                 # runs what is missing, then the report
  python -m benchmarks.ace_results --runs_dir=runs/ace --norun         # only rebuild the report
  python -m benchmarks.ace_results --datasets=synthetic --extractors=bow --seeds=0,1 --lams=0,50,5000 \
      --protocols=all --overrides=--config.epochs=1 --runs_dir=/tmp/ace/runs \
      --out=/tmp/ace/ace.md                                              # end-to-end check

Run from the repository root (launch.py is found next to benchmarks/).

Each run is `python launch.py --config=configs/ace.py:<dataset>_<init>_<extractor>
--workdir=<runs_dir>/<dataset>/<init>_<extractor>/seed<k> --config.seed=<k>` in a subprocess (a
killed run resumes from its checkpoints when relaunched); its metrics.json is the source of the
tables, its test_per_user.npz of the paired ACE-vs-baseline differences. The ID-only SASRec does
not depend on the extractor and runs once per dataset and seed (folder `id/seed<k>`). The
lambda sweep reruns ACE with --config.init.lam=<lambda> (lambda 50 is the main ACE run).
--protocols: `all` (our protocol: every training prefix, the presets as named) and `last` (the
official runs' protocol: presets `<...>_last`, folders `<init>_<extractor>_last/seed<k>` and
`id_last/seed<k>`, a second table per dataset); `all` runs first, and the lambda sweep is `all`
only. Two extra rows of the `all` table are shown when their runs exist: ACE on the ACE code's item
text (folder `ace_minilm_acetext/seed0`, run only with --acetext:
--config.init.embed.text_template=ace_official) and AlphaFuse with U[0, 1) ID embeddings (the
archived `alphafuse_<extractor>_uniform` runs of the earlier default; never launched). The
anisotropy columns describe each initial item table as the model starts from it (seed 0), computed
here with recsys_core/anisotropy.py; the plots (spectra, metric against lambda, validation curves of
every initialiser, unfinished runs included) are PNGs next to the report. Hand-written notes below the
marker at the end of the report are kept when it is regenerated.

Run folders do not travel with the repository, so each finished run's small outputs (metrics,
validation log, config, per-user test metrics; no checkpoints) are copied into runs/ace/ beside the
report (benchmarks/results/runs/ace/), which is committed: a run whose folder is gone is read from
there, and the anisotropy of the initial tables is archived there too (--recompute_anisotropy to redo
it; --norun reads the anisotropy only from there and lists the tables it lacks as not archived).
A row with no run in --runs_dir nor in the archive is shown as pending.

--backbones (default sasrec,gru4rec,bert4rec; seqrec/backbones.py): SASRec is everything above.
GRU4Rec and BERT4Rec run the same presets with --config.backbone=<backbone>, in folders
`<dataset>/<backbone>/<init>_<extractor>/seed<k>` (ID-only `<dataset>/<backbone>/id/seed<k>`), only
the `all` protocol's main table (no lambda sweep, no `_last`, no --acetext/--acecode, no U[0, 1)
AlphaFuse); every SASRec run first, then GRU4Rec, then BERT4Rec. Each gets a subsection of its
dataset (settings, table, ordering, ACE minus each baseline); curves, lambda and anisotropy are
SASRec's only.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from benchmarks import reports
from configs import ace as ace_configs
from lae_jax import ace_plots
from recsys_core import anisotropy
from recsys_core import plots
from recsys_core import readers
from recsys_core import records
from seqrec import backbones as seqrec_backbones
from seqrec import initialisers
from seqrec import run as seqrec_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
LABELS = {"id": "ID only", "raw": "raw LLM (top-k SVD)", "llm2x": "LLM2X (PCA)",
          "whitenrec": "WhitenRec", "whitenrec_plus": "WhitenRec+", "llmemb": "LLMEmb-style",
          "alphafuse": "AlphaFuse", "alpharec": "AlphaRec", "ace": "ACE"}
# Run variants: a suffix of the run folder (and of the preset for the protocols).
PROTOCOLS = {"all": "", "last": "_last"}
LAST_TITLE = ("Official runs' protocol (`_last`: last training prefix per user, lr 1e-4, RecBole "
              "early stopping, ≤400 epochs)")
ACETEXT = "_acetext"   # ACE on the ACE code's item text (extractor minilm, seed 0, --acetext)
ACETEXT_EXTRACTOR = "minilm"
UNIFORM = "_uniform"   # archived AlphaFuse runs with U[0, 1) ID embeddings (never launched)
ACECODE = "_acecode"   # --config.init.definition=ace_code (extractor minilm, seed 0, --acecode)
ACECODE_INITS = ("llm2x", "whitenrec", "llmemb")
VARIANT_LABELS = {("ace", ACETEXT): f"ACE, ACE code's item text ({ACETEXT_EXTRACTOR})",
                  ("alphafuse", UNIFORM): "AlphaFuse, U[0, 1) IDs (earlier default)",
                  **{(init, ACECODE): f"{LABELS[init]}, the ACE code's definition"
                     for init in ACECODE_INITS}}
BACKBONE_LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}
SASREC = "sasrec"  # the backbone of the folders without a backbone level (the archive's layout)
PAPER = ("The paper reports ACE above every baseline; secondary summaries quote SASRec Recall@20 on "
         "Beauty .1288 (ACE) vs .1263 (AlphaFuse) with OpenAI embeddings (unverified: the paper's "
         "tables were not read).")

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/ace", "runs go to <runs_dir>/<dataset>/...")
_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "folder holding the datasets")
_DATASETS = flags.DEFINE_list("datasets", ["amazon_beauty", "amazon_toys"], "configs/ace.py datasets")
_EXTRACTORS = flags.DEFINE_list("extractors", ["minilm", "smollm2"], "extractor names or .npy paths")
_INITS = flags.DEFINE_list("inits", list(initialisers.KINDS), "initialisers to run")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds of every configuration")
_LAMS = flags.DEFINE_list("lams", ["0", "10", "50", "200", "1000", "5000"], "ACE lambda sweep")
_LAM_SEEDS = flags.DEFINE_list("lam_seeds", None, "seeds of the sweep (default: --seeds)")
_OVERRIDES = flags.DEFINE_list("overrides", [], "extra --config.x=y arguments for every run")
_PROTOCOLS = flags.DEFINE_list("protocols", ["all", "last"],
                               "all: every training prefix; last: the official runs' protocol "
                               "(<preset>_last); the lambda sweep is `all` only")
_ACETEXT = flags.DEFINE_bool("acetext", False,
                             f"also run ACE ({ACETEXT_EXTRACTOR}, seed 0) on the ACE code's item text")
_ACECODE = flags.DEFINE_bool("acecode", False,
                             f"also run {', '.join(ACECODE_INITS)} ({ACETEXT_EXTRACTOR}, seed 0) as "
                             "the ACE code defines them (--config.init.definition=ace_code)")
_BACKBONES = flags.DEFINE_list(
    "backbones", list(seqrec_backbones.BACKBONES),
    "sequential backbones (--config.backbone); gru4rec and bert4rec run only the `all` protocol's "
    "main table, in <runs_dir>/<dataset>/<backbone>/...")
_RUN = flags.DEFINE_bool("run", True, "run the configurations whose metrics.json is missing")
_RECOMPUTE = flags.DEFINE_bool("recompute_anisotropy", False,
                               "recompute the initial tables' anisotropy even when archived")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/ace.md"), "markdown output")
_ARCHIVE = flags.DEFINE_string(
    "archive_dir", None, "committed copies of finished runs' small outputs, read where a run folder "
    "is gone (default: runs/ace/ beside --out)")


def preset(dataset, init, extractor, variant=""):
  name = f"{dataset}_id" if init == "id" else f"{dataset}_{init}_{extractor}"
  return name + (variant if variant in PROTOCOLS.values() else "")


def label(init, variant=""):
  return VARIANT_LABELS.get((init, variant), LABELS[init])


def protocols():
  """The --protocols asked for, `all` first."""
  unknown = set(_PROTOCOLS.value) - set(PROTOCOLS)
  if unknown:
    raise app.UsageError(f"--protocols: unknown {sorted(unknown)}; use {', '.join(PROTOCOLS)}")
  return [p for p in PROTOCOLS if p in _PROTOCOLS.value]


def backbones():
  """The --backbones asked for, in the running order (SASRec, GRU4Rec, BERT4Rec)."""
  unknown = set(_BACKBONES.value) - set(seqrec_backbones.BACKBONES)
  if unknown:
    raise app.UsageError(f"--backbones: unknown {sorted(unknown)}; use "
                         f"{', '.join(seqrec_backbones.BACKBONES)}")
  return [b for b in seqrec_backbones.BACKBONES if b in _BACKBONES.value]


def other_backbones():
  """The backbones besides SASRec: the `all` protocol's main table only (none without `all`)."""
  return [b for b in backbones() if b != SASREC] if "all" in protocols() else []


def tag(extractor):
  """A folder-safe name of an extractor (a .npy path becomes its file stem)."""
  return os.path.splitext(os.path.basename(extractor))[0] if extractor.endswith(".npy") else extractor


def workdir(dataset, init, extractor, seed, lam=None, variant="", backbone=SASREC):
  name = ("id" if init == "id" else f"{init}_{tag(extractor)}") + variant
  parts = ([_RUNS_DIR.value, dataset] + ([backbone] if backbone != SASREC else []) + [name]
           + ([f"lam{lam:g}"] if lam is not None else []))
  return os.path.abspath(os.path.join(*parts, f"seed{seed}"))


def archive_root():
  return _ARCHIVE.value or os.path.join(os.path.dirname(os.path.abspath(_OUT.value)), "runs", "ace")


def archived(folder):
  """The archive's copy of a run folder under --runs_dir."""
  return os.path.join(archive_root(), os.path.relpath(folder, os.path.abspath(_RUNS_DIR.value)))


def source(folder):
  """Where to read a run: its folder when finished, else its archived copy, else its folder."""
  return reports.run_source(folder, archived(folder))


def launch_args(dataset, init, extractor, seed, lam=None, variant="", backbone=SASREC):
  args = [f"--config=configs/ace.py:{preset(dataset, init, extractor, variant)}",
          *([f"--config.backbone={backbone}"] if backbone != SASREC else []),
          f"--config.seed={seed}", f"--config.data_dir={_DATA_DIR.value}", "--config.progress=False",
          *_OVERRIDES.value]
  if variant == ACETEXT:
    args.append("--config.init.embed.text_template=ace_official")
  if variant == ACECODE:
    args.append("--config.init.definition=ace_code")
  return args + ([f"--config.init.lam={lam:g}"] if lam is not None else [])


def ensure_run(dataset, init, extractor, seed, lam=None, variant="", launchable=True,
               backbone=SASREC):
  """Run the configuration unless its metrics.json exists (or --norun, or not `launchable`);
  returns the metrics or None."""
  folder = workdir(dataset, init, extractor, seed, lam, variant, backbone)
  finished_here = os.path.join(folder, "metrics.json")
  if (_RUN.value and launchable and variant != UNIFORM
      and not os.path.exists(os.path.join(source(folder), "metrics.json"))):
    reports.launch_run(launch_args(dataset, init, extractor, seed, lam, variant, backbone), folder)
  if os.path.exists(finished_here):
    reports.archive_run(folder, archived(folder))
  path = os.path.join(source(folder), "metrics.json")
  return json.load(open(path)) if os.path.exists(path) else None


def per_user_path(folder):
  return os.path.join(folder, "test_per_user.npz")


def sweep_lams():
  return [float(x) for x in _LAMS.value]


def collect():
  """{(dataset, init, extractor, lam or None, variant, backbone): [metrics per seed]} of every run,
  running missing ones: every SASRec `all` run of every dataset first, then the `last` ones, then
  the other backbones' `all` main tables (GRU4Rec, then BERT4Rec)."""
  runs = {}
  seeds = [int(s) for s in _SEEDS.value]
  lam_seeds = [int(s) for s in (_LAM_SEEDS.value or _SEEDS.value)]
  def add(dataset, init, extractor, seed, lam=None, variant="", key_lam=None, backbone=SASREC,
          **kwargs):
    runs.setdefault((dataset, init, extractor, key_lam, variant, backbone), []).append(
        ensure_run(dataset, init, extractor, seed, lam, variant, backbone=backbone, **kwargs))
  def main_grid(dataset, variant="", backbone=SASREC):  # every initialiser x extractor x seed
    for seed in seeds:
      if "id" in _INITS.value:
        add(dataset, "id", "", seed, variant=variant, backbone=backbone)
      for extractor in _EXTRACTORS.value:
        for init in _INITS.value:
          if init != "id":
            add(dataset, init, extractor, seed, variant=variant, backbone=backbone)
  for protocol in protocols() if SASREC in backbones() else ():
    variant = PROTOCOLS[protocol]
    for dataset in _DATASETS.value:
      main_grid(dataset, variant)
      if protocol != "all":
        continue
      for extractor in _EXTRACTORS.value:
        if "alphafuse" in _INITS.value:  # archived only
          for seed in seeds:
            add(dataset, "alphafuse", extractor, seed, variant=UNIFORM)
        if "ace" in _INITS.value and extractor == ACETEXT_EXTRACTOR:
          add(dataset, "ace", extractor, 0, variant=ACETEXT, launchable=_ACETEXT.value)
        for init in ACECODE_INITS if extractor == ACETEXT_EXTRACTOR else ():
          if init in _INITS.value:
            add(dataset, init, extractor, 0, variant=ACECODE, launchable=_ACECODE.value)
        for lam in sweep_lams():
          for seed in lam_seeds:
            add(dataset, "ace", extractor, seed, None if lam == 50.0 else lam, key_lam=lam)
  for backbone in other_backbones():
    for dataset in _DATASETS.value:
      main_grid(dataset, backbone=backbone)
  return {key: [m for m in values if m is not None] for key, values in runs.items()}


def apply_overrides(config, overrides):
  """--config.a.b=v arguments applied to a ConfigDict (typed like the field they replace)."""
  for arg in overrides:
    if not arg.startswith("--config."):
      continue
    path, value = arg[len("--config."):].split("=", 1)
    *parents, leaf = path.split(".")
    node = config
    for name in parents:
      node = node[name]
    old = node[leaf]
    node[leaf] = (value.lower() in ("1", "true") if isinstance(old, bool) else type(old)(value)
                  if isinstance(old, (int, float, str)) else value)
  return config


def table_anisotropy(dataset, extractor):
  """{init: anisotropy dict} of each initial table (seed 0) and "llm" of the embeddings (AlphaFuse
  also with U[0, 1) ID embeddings: "alphafuse_uniform"), plus the embeddings' singular values, the
  hidden size and AlphaFuse's id_init."""
  out = {}
  ds = readers.load_dataset(dataset, _DATA_DIR.value)
  hidden = id_init = None
  for init in _INITS.value:
    config = apply_overrides(ace_configs.get_config(preset(dataset, init, extractor)), _OVERRIDES.value)
    config.data_dir = _DATA_DIR.value
    hidden = config.model.hidden
    if init != "id" and "llm" not in out:
      embeddings = initialisers.llm_embeddings(config, ds)
      out["llm"] = summary(embeddings)
      spectrum = anisotropy.singular_values(embeddings)
    item_init = initialisers.build(config, ds)
    model = seqrec_run.build_model(config, ds.num_items, item_init and item_init.module)
    params = initialisers.init_params(model, 0, item_init)
    out[init] = summary(initialisers.initial_table(model, params))
    if init == "alphafuse":
      id_init = config.init.id_init
      config.init.id_init = "uniform"
      uniform = initialisers.build(config, ds)
      uniform_model = seqrec_run.build_model(config, ds.num_items, uniform.module)
      params = initialisers.init_params(uniform_model, 0, uniform)
      out["alphafuse_uniform"] = summary(initialisers.initial_table(uniform_model, params))
    if init == "ace":
      for lam in sweep_lams():
        config.init.lam = lam
        params = initialisers.init_params(model, 0, initialisers.build(config, ds))
        out[f"ace_lam{lam:g}"] = summary(initialisers.initial_table(model, params))
  return out, (spectrum if "llm" in out else None), hidden, id_init


class NotArchived(Exception):
  """--norun and the archive has no anisotropy of these tables."""


def archived_anisotropy(dataset, extractor):
  """table_anisotropy's result, from the archive when it holds every table asked for (computing
  it needs the embeddings: minutes, or an extraction on a new machine); else computed and archived.
  --norun (without --recompute_anisotropy) never computes: it returns what the archive holds.
  Archives written before AlphaFuse's N(0, 1) default (no "alphafuse_id_init") hold the U[0, 1)
  table under "alphafuse": it is read as "alphafuse_uniform"."""
  path = os.path.join(archive_root(), dataset, f"anisotropy_{tag(extractor)}.json")
  needed = set(_INITS.value) | {f"ace_lam{lam:g}" for lam in sweep_lams() if "ace" in _INITS.value}
  cached = json.load(open(path)) if os.path.exists(path) else None
  if cached is not None and "alphafuse_id_init" not in cached and "alphafuse" in cached["stats"]:
    cached["stats"]["alphafuse_uniform"] = cached["stats"].pop("alphafuse")
  if cached is not None and not _RECOMPUTE.value and (needed <= set(cached["stats"]) or not _RUN.value):
    spectrum = cached["spectrum"]
    return cached["stats"], None if spectrum is None else np.array(spectrum), cached["hidden"]
  if cached is None and not _RUN.value and not _RECOMPUTE.value:
    raise NotArchived(path)
  stats, spectrum, hidden, id_init = table_anisotropy(dataset, extractor)
  records.write_json(path, {"stats": stats, "hidden": hidden, "alphafuse_id_init": id_init,
                            "spectrum": None if spectrum is None else np.asarray(spectrum).tolist()})
  return stats, spectrum, hidden


def summary(table):
  s = anisotropy.singular_values(table)
  return {"dims": table.shape[1], "mean_cosine": anisotropy.mean_pairwise_cosine(table),
          "top10_sv_share": anisotropy.top_k_share(s, 10), "effective_rank": anisotropy.effective_rank(s),
          "uniformity": anisotropy.uniformity(table)}


def cell(values, metric):
  xs = [m[f"test/{metric}"] for m in values]
  if not xs:
    return "—"
  spread = f" ± {np.std(xs, ddof=1):.4f}" if len(xs) > 1 else ""
  return f"{np.mean(xs):.4f}{spread}"


def devices(values):
  """"cpu, H200, H200": the device each seed's run trained on, in seed order."""
  return ", ".join(m.get("device", "?").replace("NVIDIA ", "") for m in values) or "—"


def mean(values, metric):
  xs = [m[f"test/{metric}"] for m in values]
  return float(np.mean(xs)) if xs else float("nan")


def table_rows(extractor, variant, runs=None, dataset=None, backbone=SASREC):
  """[(init, variant)] of an extractor's rows in the `variant` protocol's table (no ID-only row):
  SASRec's `all` table adds the U[0, 1) AlphaFuse, the ACE-text and the ACE-code-definition rows
  where `runs` holds them (every one of them when `runs` is None)."""
  rows = []
  for init in _INITS.value:
    if init == "id":
      continue
    rows.append((init, variant))
    if variant or backbone != SASREC:
      continue
    extra = UNIFORM if init == "alphafuse" else None
    if extractor == ACETEXT_EXTRACTOR:
      extra = ACETEXT if init == "ace" else ACECODE if init in ACECODE_INITS else extra
    if extra and (runs is None or runs.get((dataset, init, extractor, None, extra, backbone))):
      rows.append((init, extra))
  return rows


def results_table(dataset, runs, variant, backbone=SASREC):
  lines = ["| initialiser | extractor | " + " | ".join(METRICS) + " | n | best epoch | ran on |",
           "|---" * (len(METRICS) + 5) + "|"]
  rows = ([("id", "", variant)] if "id" in _INITS.value else []) + [
      (init, e, v) for e in _EXTRACTORS.value
      for init, v in table_rows(e, variant, runs, dataset, backbone)]
  for init, extractor, v in rows:
    values = runs.get((dataset, init, extractor, None, v, backbone), [])
    epochs = ", ".join(str(m.get("best/epoch", "?")) for m in values)
    cells = ([cell(values, m) for m in METRICS] + [str(len(values)), epochs, devices(values)]
             if values else pending(len(METRICS) + 3))
    lines.append(f"| {label(init, v)} | {tag(extractor) or '—'} | " + " | ".join(cells) + " |")
  return lines


def dataset_section(dataset, runs, out_dir):
  lines = [f"## {dataset}", ""]
  if SASREC in backbones():
    lines += sasrec_section(dataset, runs, out_dir)
  for backbone in other_backbones():
    lines += backbone_section(dataset, runs, backbone)
  return lines


def sasrec_section(dataset, runs, out_dir):
  """SASRec's tables (both protocols), paired differences, curves, lambda sweep and anisotropy."""
  lines = []
  for protocol in protocols():
    variant = PROTOCOLS[protocol]
    if variant:
      lines += [f"### {LAST_TITLE}", ""]
    lines += [settings(dataset, runs, variant),
              "Test metrics, mean ± std over seeds (n = number of finished seeds).", "",
              *results_table(dataset, runs, variant), ""]
    lines += [ordering(dataset, runs, variant), ""] if ordering(dataset, runs, variant) else []
  for extractor in _EXTRACTORS.value:
    for protocol in protocols():
      lines += paired_section(dataset, extractor, PROTOCOLS[protocol])
      lines += curves_section(dataset, extractor, out_dir, PROTOCOLS[protocol])
  lines += extractor_section(dataset)
  if "last" in protocols():
    lines += protocol_section(dataset)
  for extractor in _EXTRACTORS.value:
    lines += lambda_section(dataset, extractor, runs, out_dir)
    lines += anisotropy_section(dataset, extractor, out_dir)
  return lines


def backbone_section(dataset, runs, backbone):
  """Another backbone's `all` main table, its ordering and ACE minus each baseline (seed 0)."""
  lines = [f"### {BACKBONE_LABELS[backbone]}", "", settings(dataset, runs, "", backbone),
           "Test metrics, mean ± std over seeds (n = number of finished seeds).", "",
           *results_table(dataset, runs, "", backbone), ""]
  order = ordering(dataset, runs, "", backbone)
  lines += [order, ""] if order else []
  for extractor in _EXTRACTORS.value:
    lines += paired_section(dataset, extractor, "", backbone)
  return lines


def pending(columns):
  """The `columns` cells of a row with no finished run: "pending", then empty ones."""
  return ["pending" + " |" * (columns - 1)]


def row_means(dataset, init, extractor, runs, lam=None, variant="", backbone=SASREC):
  """{metric: mean over seeds} of a row ({} when it has no finished run)."""
  values = runs.get((dataset, init, "" if init == "id" else extractor, lam, variant, backbone), [])
  return {m: mean(values, m) for m in METRICS} if values else {}


def settings(dataset, runs, variant="", backbone=SASREC):
  """The resolved settings of the dataset's runs of a protocol and backbone (from a run's
  config.json; from the preset when there is none yet)."""
  c = None
  for (d, init, extractor, lam, v, b), values in runs.items():
    path = os.path.join(source(workdir(d, init, extractor, 0, lam, v, b)), "config.json")
    if d == dataset and v == variant and b == backbone and values and os.path.exists(path):
      c, origin = json.load(open(path)), ""
      break
  if c is None:
    if variant not in PROTOCOLS.values():
      return ""
    config = ace_configs.get_config(preset(dataset, "id", "", variant))
    config.backbone = backbone
    config = apply_overrides(config, _OVERRIDES.value)
    c, origin = config.to_dict(), " (of the preset; no run yet)"
  m = c["model"]
  prefixes = {"all": "every training prefix", "last": "the last training prefix of each user"}
  rule = {"strict": "a strictly better validation improves",
          "recbole": "RecBole's rule: ties improve, stop after patience + 1"}
  if backbone == "gru4rec":
    model = (f"{m['gru_layers']} GRU layer{'s' * (m['gru_layers'] != 1)}, GRU hidden "
             f"{m['gru_hidden']}, item table {m['hidden']}, embedding dropout {m['dropout']}")
  else:
    model = (f"{m['num_layers']} layers, {m['num_heads']} heads, hidden {m['hidden']}, "
             f"inner {m['inner']}, dropout {m['dropout']}/{m['attention_dropout']}")
    if backbone == "bert4rec":
      model += f", mask ratio {m['mask_ratio']}, ft ratio {m['ft_ratio']}"
  return (f"Settings{origin}: {model}, max length {c['max_len']}, batch {c['batch_size']}, Adam lr {c['learning_rate']}, at most "
          f"{c['epochs']} epochs, patience {c['patience']} on {c['early_stop_metric']}"
          # runs from before these fields existed used every prefix and the strict rule
          + f" ({rule[c.get('early_stop_rule', 'strict')]})"
          + f"; trains on {prefixes[c.get('train_prefixes', 'all')]}.\n")


def ordering(dataset, runs, variant="", backbone=SASREC):
  """A plain statement of where ACE stands against the best baseline, per extractor (Recall@20)."""
  parts = []
  for extractor in _EXTRACTORS.value:
    rows = [("id", variant)] * ("id" in _INITS.value) + [
        r for r in table_rows(extractor, variant, runs, dataset, backbone) if r[1] != ACETEXT]
    scores = {r: row_means(dataset, r[0], extractor, runs, variant=r[1],
                           backbone=backbone).get("recall@20", float("nan"))
              for r in rows}
    scores = {k: v for k, v in scores.items() if np.isfinite(v)}
    ace = ("ace", variant)
    if ace not in scores or len(scores) < 2:
      continue
    best = max((k for k in scores if k != ace), key=scores.get)
    delta = 100 * (scores[ace] / scores[best] - 1)
    rank = sorted(scores, key=scores.get, reverse=True).index(ace) + 1
    parts.append(f"{tag(extractor)}: ACE Recall@20 {scores[ace]:.4f} vs best baseline "
                 f"{label(*best)} {scores[best]:.4f} ({delta:+.1f}%), rank {rank} of {len(scores)}")
  return ("Ordering (mean Recall@20): " + "; ".join(parts) + ".") if parts else ""


def paired_section(dataset, extractor, variant="", backbone=SASREC):
  """ACE minus each other initialiser on the same test users (seed 0), with paired standard errors;
  for SASRec's `all` protocol also ACE on the ACE code's item text minus ACE."""
  ace = seed0_per_user(dataset, "ace", extractor, variant=variant, backbone=backbone)
  others = {}
  rows = [("id", variant)] * ("id" in _INITS.value) + table_rows(extractor, variant,
                                                                  backbone=backbone)
  for init, v in rows if ace is not None else ():
    per_user = seed0_per_user(dataset, init, extractor, variant=v, backbone=backbone)
    if (init, v) != ("ace", variant) and v != ACETEXT and per_user is not None:
      others[label(init, v)] = per_user
  rows = reports.paired_table(ace, others, label="baseline") if others else []
  lines = [f"ACE minus each baseline, {tag(extractor)}"
           + (f", {BACKBONE_LABELS[backbone]}" if backbone != SASREC else "")
           + (", official runs' protocol (`_last`)" if variant else "") + ", seed 0, paired over the "
           "same test users (± the standard error of the mean per-user difference; z = difference / "
           "SE, |z| > 2 is about the 5% level for this one seed; it does not include seed-to-seed "
           "variation):", "", *rows, ""] if rows else []
  if not variant and backbone == SASREC:
    text = differences([(label("ace", ACETEXT), seed0_per_user(dataset, "ace", extractor,
                                                                variant=ACETEXT), ace)],
                       label="ACE with")
    if text:
      lines += [f"ACE on the ACE code's item text minus ACE on ours, {tag(extractor)}, seed 0, paired "
                "over the same test users:", "", *text, ""]
  return lines


def seed0_per_user(dataset, init, extractor, lam=None, variant="", backbone=SASREC):
  """The per-user test metrics of seed 0 of a row (lam 50 is the main ACE run), or None."""
  path = per_user_path(source(workdir(dataset, init, "" if init == "id" else extractor, 0,
                                      None if lam == 50.0 else lam, variant, backbone)))
  return np.load(path) if os.path.exists(path) else None


def differences(pairs, label):
  """One paired table of `name: a minus b` rows, [(name, a, b)] with per-user arrays or None."""
  rows = []
  for name, a, b in pairs:
    if a is not None and b is not None:
      rows += reports.paired_table(a, {name: b}, label=label)[2 if rows else 0:]
  return rows


def extractor_section(dataset):
  """The second extractor minus the first, same initialiser, seed 0, paired over the same users."""
  if len(_EXTRACTORS.value) < 2:
    return []
  first, second = _EXTRACTORS.value[:2]
  rows = differences([(label(init, v), seed0_per_user(dataset, init, second, variant=v),
                       seed0_per_user(dataset, init, first, variant=v))
                      for init, v in table_rows(first, "") if v != ACETEXT],
                     label="initialiser")
  return [f"{tag(second)} minus {tag(first)}, same initialiser, seed 0, paired over the same test "
          "users:", "", *rows, ""] if rows else []


def protocol_section(dataset):
  """The official runs' protocol minus ours, same initialiser and extractor, seed 0, paired."""
  pairs = [(label("id"), seed0_per_user(dataset, "id", "", variant=PROTOCOLS["last"]),
            seed0_per_user(dataset, "id", ""))] if "id" in _INITS.value else []
  pairs += [(f"{label(init)}, {tag(extractor)}",
             seed0_per_user(dataset, init, extractor, variant=PROTOCOLS["last"]),
             seed0_per_user(dataset, init, extractor))
            for extractor in _EXTRACTORS.value for init in _INITS.value if init != "id"]
  rows = differences(pairs, label="initialiser")
  return ["Official runs' protocol (`_last`) minus ours (every prefix), same initialiser, seed 0, "
          "paired over the same test users:", "", *rows, ""] if rows else []


def curves_section(dataset, extractor, out_dir, variant=""):
  """Validation NDCG@10 per epoch of every initialiser (seed 0), unfinished runs included."""
  curves = {}
  rows = [("id", variant)] * ("id" in _INITS.value) + table_rows(extractor, variant)
  for init, v in rows:
    folder = source(workdir(dataset, init, "" if init == "id" else extractor, 0, variant=v))
    lines = plots.read_validations(folder)
    if lines:
      running = not os.path.exists(os.path.join(folder, "metrics.json"))
      curves[label(init, v) + (" (training)" if running else "")] = lines
  if set(curves) <= {LABELS["id"], LABELS["id"] + " (training)"}:  # nothing of this extractor yet
    return []
  png = f"ace_{dataset}_{tag(extractor)}{variant}_curves.png"
  protocol = ", official runs' protocol" if variant else ""
  plots.plot_learning_curves(curves, "valid/ndcg@10", os.path.join(out_dir, png),
                             title=f"SASRec on {dataset} ({tag(extractor)}{protocol}), seed 0")
  return [f"![validation NDCG@10 per epoch, {tag(extractor)}{protocol}]({png})", ""]


def lambda_section(dataset, extractor, runs, out_dir):
  points = []  # one per seed and lambda
  for lam in sweep_lams():
    for v in runs.get((dataset, "ace", extractor, lam, "", SASREC), []):
      points.append({"lam": lam, **{f"test/{m}": v[f"test/{m}"] for m in METRICS}})
  if not points:
    return []
  reference = {LABELS[i]: row_means(dataset, i, extractor, runs).get("ndcg@20", float("nan"))
               for i in ("id", "raw") if i in _INITS.value}
  reference = {k: v for k, v in reference.items() if np.isfinite(v)}
  png = f"ace_{dataset}_{tag(extractor)}_lambda.png"
  ace_plots.plot_metric_vs_lambda(points, "test/ndcg@20", os.path.join(out_dir, png), reference,
                                  title=f"ACE on {dataset} ({tag(extractor)}): NDCG@20 against λ")
  lines = [f"### ACE λ sensitivity, {tag(extractor)}", "", f"![NDCG@20 against λ]({png})", "",
           "| λ | " + " | ".join(METRICS) + " | n |", "|---" * (len(METRICS) + 2) + "|"]
  for lam in sweep_lams():
    values = runs.get((dataset, "ace", extractor, lam, "", SASREC), [])
    cells = ([cell(values, m) for m in METRICS] + [str(len(values))] if values
             else pending(len(METRICS) + 1))
    lines.append(f"| {lam:g} | " + " | ".join(cells) + " |")
  reference = seed0_per_user(dataset, "ace", extractor, 50.0)
  rows = differences([(f"λ = {lam:g}", seed0_per_user(dataset, "ace", extractor, lam), reference)
                      for lam in sweep_lams() if lam != 50.0], label="ACE at")
  if rows:
    lines += ["", f"ACE at each λ minus ACE at λ = 50, {tag(extractor)}, seed 0, paired over the same "
              "test users:", "", *rows]
  return lines + [""]


def anisotropy_section(dataset, extractor, out_dir):
  try:
    stats, spectrum, hidden = archived_anisotropy(dataset, extractor)
  except NotArchived:
    return [f"Anisotropy of the initial tables ({tag(extractor)}): not archived (a run without "
            "--norun, or --recompute_anisotropy, computes it).", ""]
  except (ValueError, FileNotFoundError) as error:  # e.g. embeddings not cached / computable here
    return [f"Anisotropy of the initial tables ({tag(extractor)}): not computed ({error}).", ""]
  lines = [f"### Anisotropy of the initial item tables, {tag(extractor)}", "",
           "Mean pairwise cosine (exact), share of the 10 largest singular values in their sum, "
           "effective rank, uniformity (log E exp(-2||u_i - u_j||^2); lower = more uniform).", "",
           "| table | dims | mean cos | top-10 σ share | effective rank | uniformity |",
           "|---|---|---|---|---|---|"]
  order = ["id"] * ("id" in _INITS.value) + ["llm"] * ("llm" in stats) + [
      init + v for init, v in table_rows(extractor, "") if v not in (ACETEXT, ACECODE)]
  for name in order:
    if name == "alphafuse_uniform" and name not in stats:
      continue  # computed only beside the N(0, 1) table
    text = (f"LLM embeddings E ({tag(extractor)})" if name == "llm"
            else label(*(("alphafuse", UNIFORM) if name == "alphafuse_uniform" else (name, ""))))
    s = stats.get(name)
    lines.append(f"| {text} | not archived | | | | |" if s is None else
                 f"| {text} | {s['dims']} | {s['mean_cosine']:.3f} | {s['top10_sv_share']:.3f} | "
                 f"{s['effective_rank']:.1f} | {s['uniformity']:.3f} |")
  sweep = [(lam, stats[f"ace_lam{lam:g}"]) for lam in sweep_lams() if f"ace_lam{lam:g}" in stats]
  if sweep:
    # λ acts on absolute squared singular values, so λ / s_k^2 (k = hidden, the last kept direction)
    # and the table's mean cosine compare a λ across extractors of different widths.
    s_k2 = None if spectrum is None else float(np.asarray(spectrum)[hidden - 1]) ** 2
    lines += ["", f"ACE's initial table against λ ({tag(extractor)}; λ → ∞ tends to the raw row; "
              f"s_k² = {'not archived' if s_k2 is None else f'{s_k2:.2f}'} is the {hidden}th squared "
              "singular value of the normalised embeddings):", "",
              "| λ | λ / s_k² | mean cos | top-10 σ share | effective rank | uniformity |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {lam:g} | {'—' if s_k2 is None else f'{lam / s_k2:.3g}'} | {s['mean_cosine']:.3f} | "
              f"{s['top10_sv_share']:.3f} | {s['effective_rank']:.1f} | {s['uniformity']:.3f} |"
              for lam, s in sweep]
  png = f"ace_{dataset}_{tag(extractor)}_spectrum.png"
  if spectrum is not None:
    ace_plots.plot_spectra(spectrum, sweep_lams(), os.path.join(out_dir, png), k=hidden,
                           title=f"{dataset} ({tag(extractor)}): spectrum of E and of E_ace")
  if spectrum is not None or os.path.exists(os.path.join(out_dir, png)):
    lines += ["", f"![spectrum of raw vs ACE embeddings]({png})"]
  return lines + [""]


# Where the archived runs trained (benchmarks/results/runs/ace/); a row's device is in "ran on".
SETUP = [
    "## Setup", "",
    "- Hardware: the device of each row is in its \"ran on\" column; cpu is a 2-core x86-64 CPU "
    "(AMD EPYC) with 24 GiB of memory.",
    "- Software: Python 3.11, jax 0.10.2, flax 0.12.8, optax 0.2.8, orbax-checkpoint 0.12.8, "
    "numpy 2.4.6 (requirements.txt).",
    "- Load: the CPU runs at times shared the machine with other jobs; that changes their run time, "
    "not their metrics.", ""]


def names(asked):
  """"SASRec, GRU4Rec and BERT4Rec" of the backbones asked for."""
  labels = [BACKBONE_LABELS[b] for b in asked]
  return ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)


def header():
  args = " ".join(f"--{k}={','.join(v) if isinstance(v, list) else v}" for k, v in (
      ("runs_dir", _RUNS_DIR.value), ("datasets", _DATASETS.value),
      ("extractors", _EXTRACTORS.value), ("seeds", _SEEDS.value), ("lams", _LAMS.value),
      ("protocols", _PROTOCOLS.value), ("overrides", _OVERRIDES.value),
      # only when not the default (the report of every backbone keeps its command line)
      ("backbones", None if backbones() == list(seqrec_backbones.BACKBONES) else _BACKBONES.value))
      if v)
  args = reports.portable(args)  # no machine's folders
  return [
      f"# ACE and its baselines in {names(backbones())}", "", *SETUP,
      f"Regenerate: `python -m benchmarks.ace_results {args}` (trains what is missing; `--norun` "
      "rebuilds from the committed archive benchmarks/results/runs/ace/ alone). Each row is",
      "`python launch.py --config=configs/ace.py:<dataset>_<init>_<extractor>[_last] --config.seed=<k>`;",
      "its metrics.json is the source. A row marked pending has no finished run in the archive.", "",
      "- Protocol: leave-one-out, full ranking over all items (seen items rankable, as RecBole), "
      "Recall@k = hit@k, test metrics at the best validation NDCG@10 (patience 10).",
      "- Backbone for every initialiser: RecBole's SASRec with the settings of configs/ace.py "
      "(real datasets: the ACE paper's 2 layers, 2 heads, hidden 128, inner 256, dropout .5/.3, "
      "max length 50, batch 256, Adam lr 5e-4 (the value the official run.sh passes with `--lr`; no "
      "code of the official snapshot reads `lr`, so the official runs train at the dataset yamls' "
      "learning_rate 1e-4: the `_last` rows); each dataset's resolved settings are listed below), "
      "full softmax cross-entropy; the item table that embeds the inputs scores the outputs.",
      "- ACE: E L2-normalised, not centred; E_ace = U_k g(S_k), g(s) = sqrt(s²/(s²+λ)), k = hidden, "
      "global std .1, λ = 50; trainable. raw = E V_k (top-k singular directions, ACE's λ → ∞ "
      "spectrum) and LLM2X = centred PCA-k, both trainable at the same std .1.",
      "- WhitenRec(+): frozen ZCA-whitened E (+ group whitening, 4 groups) through RecBole's MLP "
      "[d, h, h]; the two views fused by item-level attention. DWSRec's dual-view sequence encoder "
      "and cosine/temperature scoring are not used.",
      "- LLMEmb-style: frozen PCA of E to min(1536, d) + trainable adapter Linear(D, D/2) → "
      "Linear(D/2, h), initialised as LLMEmb's torch layers (xavier-normal weights, default "
      "biases). LLMEmb's supervised contrastive fine-tuning of the LLM (its first stage) "
      "and its alignment loss to a pretrained SASRec are NOT included.",
      "- AlphaFuse: E centred and whitened (standardised principal coordinates), the top 128 "
      "directions kept and frozen (the language part); a trainable ID table of 64 columns drawn "
      "from N(0, 1), as Alphafuse_SASRec.yaml (`init_type: normal`), added to the last 64 of the "
      "128 kept whitened directions. The row \"AlphaFuse, U[0, 1) IDs (earlier default)\" is the "
      "same table with the ID columns drawn from U[0, 1) (`--config.init.id_init=uniform`), "
      "archived runs of our earlier default.",
      "- Baselines: which definition each row follows (ours: seqrec/initialisers.py; the ACE "
      "code's: its RecBole models, DCheol/ACE). WhitenRec: differs. Ours whitens (ZCA) and maps "
      "through RecBole's MLP [d, h, h] (dropout .2 and ReLU after each Linear, N(0, .01) "
      "weights); the ACE code's only centres E (its whitened matrix is computed, never used) "
      "and maps it by Linear(d, d/2) → ReLU → Linear(d/2, h) at torch's default init. LLMEmb: "
      "differs in the adapter's init. Both: frozen PCA, then Linear → Linear, no activation; "
      "ours PCA to min(1536, d) (= d for MiniLM and SmolLM2), Linear(D, D/2) → Linear(D/2, h) with "
      "LLMEmb's own xavier-normal weights and torch's default biases; the ACE code's "
      "Linear(1536, 768) → Linear(768, h) with N(0, .02) weights and zero biases. LLM2X: differs "
      "in scale. Both centred PCA-128, trainable; ours rescaled to global std .1, the ACE "
      "code's not rescaled. AlphaRec: the same as the ACE code's (frozen raw E → Linear(d, d/2) "
      "→ LeakyReLU → Linear(d/2, h), N(0, .02) weights, zero biases). AlphaFuse: the same as the "
      "ACE code's (bullet above). ACE: the same as the ACE code's (E uncentred, U_k g(S_k), "
      "global std .1, λ = 50). The ACE code's WhitenRec, LLMEmb and LLM2X are "
      "`--config.init.definition=ace_code` (rows \"..., the ACE code's definition\", seed 0, "
      "minilm, run with --acecode; its PCA is capped at d as ours, where the ACE code's "
      "PCA(n_components=1536) needs d >= 1536, e.g. its 3072-d OpenAI embeddings).",
      f"- {PAPER}", ""]


def main(argv):
  del argv
  runs = collect()
  out_dir = os.path.dirname(os.path.abspath(_OUT.value))
  os.makedirs(out_dir, exist_ok=True)
  lines = header()
  for dataset in _DATASETS.value:
    lines += dataset_section(dataset, runs, out_dir)
  reports.write_report(_OUT.value, "\n".join(lines))
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
