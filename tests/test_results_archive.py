"""The report generators read finished runs from their committed archive once the run folders are
gone (a new machine), and show rows of lost runs from the earlier report's text, marked."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from recsys_core import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS = 40


def _fake_run(folder, seed, extra=None):
  """A finished run's small outputs, as seqrec/gram runs write them (plus a checkpoint folder)."""
  rng = np.random.default_rng(seed)
  hits = rng.random(USERS) < 0.3
  metrics = {f"test/{m}": float(rng.random()) for m in ("recall@10", "recall@20", "ndcg@10",
                                                         "ndcg@20", "recall@5", "ndcg@5")}
  records.write_json(os.path.join(folder, "metrics.json"),
                     {**metrics, "best/epoch": 3, "train/epochs": 5, "device": "cpu"})
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps({"epoch": e, "valid/ndcg@10": 0.01 * e, "time/train_s": 2.0}) + "\n"
                 for e in range(1, 6))
  records.write_arrays(os.path.join(folder, "test_per_user.npz"), {
      "user": np.arange(USERS), "recall@10": hits, "recall@20": hits,
      "ndcg@10": hits * rng.random(USERS), **(extra or {})})
  os.makedirs(os.path.join(folder, "checkpoints", "5"))


def _generate(script, *flags):
  subprocess.run([sys.executable, f"benchmarks/{script}", "--norun", *flags], cwd=ROOT, check=True,
                 capture_output=True)


def _without_load_line(path):
  return [line for line in open(path) if "load average" not in line]


def test_ace_report_survives_the_loss_of_its_run_folders(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results" / "ace.md"
  for seed, name in enumerate(("id", "ace_bow")):
    folder = runs / "synthetic" / name / "seed0"
    folder.mkdir(parents=True)
    _fake_run(str(folder), seed)
  old_paired = ["ACE minus each baseline, bow, ...:", "| baseline | Δ recall@20 ± SE | z |",
                "|---|---|---|", "| raw LLM (top-k SVD) | +0.0100 ± 0.0010 | +10.0 |"]
  records.write_json(str(tmp_path / "results" / "ace_earlier.json"), {
      "synthetic|raw|bow|": {"cells": ["0.1111", "0.2222", "0.0333", "0.0444"], "n": 1,
                             "epochs": "7", "ran_on": "H200"},
      "paired|synthetic|bow": old_paired})
  flags = ["--datasets=synthetic", "--extractors=bow", "--inits=id,raw,ace", "--seeds=0",
           "--lams=50", f"--runs_dir={runs}", f"--out={out}"]
  _generate("ace_results.py", *flags)
  first = _without_load_line(out)
  assert any(line.startswith("| raw LLM (top-k SVD) | bow | 0.1111 | 0.2222 | 0.0333 | 0.0444 | "
                             "1 | 7 | H200 ‡ |") for line in first)
  assert any(line.startswith("| ACE | bow | ") and "‡" not in line for line in first)
  assert any(line.startswith("| ID only |") for line in first)
  assert any(line.startswith("| ID only | ") and " ± " in line and line.endswith(f"| {USERS} |\n")
             for line in first)  # ACE minus ID, from the per-user files
  assert old_paired[3] + "\n" in first  # the earlier table: raw has no per-user file here
  archived = tmp_path / "results" / "ace_runs" / "synthetic"
  assert (archived / "ace_bow" / "seed0" / "test_per_user.npz").exists()
  assert not (archived / "ace_bow" / "seed0" / "checkpoints").exists()
  assert (archived / "anisotropy_bow.json").exists()
  # raw's run is lost, so its curve cannot be redrawn: the runs at hand get their own plot
  assert (tmp_path / "results" / "ace_synthetic_bow_curves_archived.png").exists()
  assert any("(ace_synthetic_bow_curves_archived.png)" in line for line in first)

  shutil.rmtree(runs)
  _generate("ace_results.py", *flags)
  assert _without_load_line(out) == first


def test_gram_report_survives_the_loss_of_its_run_folders(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results" / "gram.md"
  for seed, variant in enumerate(("gram", "no_item_prompts")):
    folder = runs / "synthetic" / variant
    folder.mkdir(parents=True)
    _fake_run(str(folder), seed)
  flags = ["--datasets=synthetic", "--variants=gram,no_item_prompts,random_ids", "--nosasrec",
           f"--runs_dir={runs}", f"--out={out}"]
  earlier = ["0.5", "0.4", "0.3", "0.2", "0.1", "0.05", "2 / 2", "9", "8", "0.74M"]
  records.write_json(str(tmp_path / "results" / "gram_earlier.json"),
                     {"synthetic|random_ids": earlier})
  _generate("gram_results.py", *flags)
  first = _without_load_line(out)
  assert "| GRAM CPU preset: random_ids | " + " | ".join(earlier) + " ‡ |\n" in first
  assert any(line.startswith("| GRAM CPU preset: no_item_prompts | ") for line in first)
  assert any(line.startswith("| w/o item prompts |") for line in first)  # paired, from per-user
  assert (tmp_path / "results" / "gram_runs" / "synthetic" / "gram" / "metrics.jsonl").exists()

  shutil.rmtree(runs)
  _generate("gram_results.py", *flags)
  assert _without_load_line(out) == first
