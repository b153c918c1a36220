"""The report generators read finished runs from their committed archive (runs/<family>/ beside the
report) once the run folders are gone (a new machine), and show rows without a run as pending."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from recsys_core import records
import pytest

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

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


def _generate(module, *flags):
  subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--norun", *flags], cwd=ROOT,
                 check=True, capture_output=True)


def test_ace_report_survives_the_loss_of_its_run_folders(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results" / "ace.md"
  for seed, name in enumerate(("id", "ace_bow", "ace_bow/lam0", "ace_bow_last")):
    folder = runs / "synthetic" / name / "seed0"
    folder.mkdir(parents=True)
    _fake_run(str(folder), seed)
  flags = ["--datasets=synthetic", "--extractors=bow", "--inits=id,raw,ace", "--seeds=0",
           "--lams=0,50,200", f"--runs_dir={runs}", f"--out={out}"]
  _generate("ace_results", *flags, "--recompute_anisotropy")  # --norun alone reads the archive only
  first = open(out).readlines()
  assert "| raw LLM (top-k SVD) | bow | pending |" + " |" * 6 + "\n" in first  # never run
  assert any(line.startswith("| ACE | bow | 0.") for line in first)
  assert "| 200 | pending |" + " |" * 4 + "\n" in first  # the λ sweep's row never run
  assert any(line.startswith("| λ = 0 | ") and line.endswith(f"| {USERS} |\n")
             for line in first)  # ACE at λ = 0 minus λ = 50, paired
  assert any(line.startswith("| ID only | — | 0.") for line in first)
  last = first.index("### Official runs' protocol (`_last`: last training prefix per user, lr 1e-4, "
                     "RecBole early stopping, ≤400 epochs)\n")
  assert any(line.startswith("| ACE | bow | 0.") for line in first[last:])  # the _last table
  assert "| ID only | — | pending |" + " |" * 6 + "\n" in first[last:]
  assert any(line.startswith("| ACE, bow | ") for line in first)  # _last minus ours, paired
  assert any(line.startswith("| ID only | ") and " ± " in line and line.endswith(f"| {USERS} |\n")
             for line in first)  # ACE minus ID, from the per-user files
  archived = tmp_path / "results" / "runs" / "ace" / "synthetic"
  assert (archived / "ace_bow" / "seed0" / "test_per_user.npz").exists()
  assert not (archived / "ace_bow" / "seed0" / "checkpoints").exists()
  assert (archived / "anisotropy_bow.json").exists()
  assert (tmp_path / "results" / "ace_synthetic_bow_curves.png").exists()

  shutil.rmtree(runs)
  _generate("ace_results", *flags)
  assert open(out).readlines() == first


def test_gram_report_survives_the_loss_of_its_run_folders(tmp_path):
  runs, out = tmp_path / "runs", tmp_path / "results" / "gram.md"
  for seed, variant in enumerate(("gram", "no_item_prompts")):
    folder = runs / "synthetic" / variant
    folder.mkdir(parents=True)
    _fake_run(str(folder), seed)
  flags = ["--datasets=synthetic", "--variants=gram,no_item_prompts,random_ids", "--nosasrec",
           f"--runs_dir={runs}", f"--out={out}"]
  _generate("gram_results", *flags)
  first = open(out).readlines()
  assert "| GRAM CPU preset: random_ids | pending |" + " |" * 10 + "\n" in first  # never run
  assert any(line.startswith("| GRAM CPU preset: no_item_prompts | 0.") for line in first)
  assert any(line.startswith("| w/o item prompts |") for line in first)  # paired, from per-user
  assert (tmp_path / "results" / "runs" / "gram" / "synthetic" / "gram" / "metrics.jsonl").exists()

  shutil.rmtree(runs)
  _generate("gram_results", *flags)
  assert open(out).readlines() == first
