"""benchmarks/gram_scaling.py: the FLOPs accounting, the log-linear fit and its crossings, the
report from a fake archive (no training), and XLA's FLOPs count of a small synthetic train step."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import gram_scaling as gs
from recsys_core import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flops_accounting_on_hand_made_numbers():
  counts = {"input_ids=64x2x64": 3, "input_ids=64x4x64": 2}
  per_batch = {"input_ids=64x2x64": 10.0, "input_ids=64x4x64": 100.0, "unused": 1e9}
  assert gs.epoch_flops(counts, per_batch) == 3 * 10 + 2 * 100
  assert gs.training_flops(230.0, 4) == 920.0
  # Epochs: steps / batches per epoch first (a run stopped mid-epoch), then train/epochs, then
  # the last validation's epoch.
  assert gs.epochs_trained({"train/steps": 150, "data/batches_per_epoch": 100,
                            "train/epochs": 1}) == 1.5
  assert gs.epochs_trained({"train/epochs": 7}) == 7.0
  assert gs.epochs_trained({}, [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]) == 3.0
  assert np.isnan(gs.epochs_trained({}, []))
  # cost_analysis(): a dict (recent jax) or a list of dicts (older jax).
  assert gs.flops_of({"flops": 5.0, "bytes accessed": 9.0}) == 5.0
  assert gs.flops_of([{"flops": 5.0}]) == 5.0
  with pytest.raises(ValueError):
    gs.flops_of([{}])
  assert gs.override_flags({"model.d_model": 128, "epochs": 10}) == [
      "--config.model.d_model=128", "--config.epochs=10"]
  assert gs.shape_name({"labels": np.zeros((64, 8)), "input_ids": np.zeros((64, 2, 32))}) == (
      "input_ids=64x2x32,labels=64x8")


def test_budgets_are_valid_overrides_of_the_preset():
  for name, overrides in gs.BUDGETS.items():
    config = gs.budget_config("amazon_beauty", overrides, "/nowhere")
    assert config.epochs == overrides["epochs"], name
    m = config.model
    if m.d_model:  # the tiny layout scaled: heads x d_kv = d_model, d_ff = 4 d_model
      assert (m.d_kv * 4, m.d_ff) == (m.d_model, 4 * m.d_model), name


def test_log_linear_fit_and_crossings():
  flops = [1e12, 1e13, 1e14]
  values = [0.01 + 0.005 * np.log10(f) for f in flops]  # exactly on a + b log10(F), a=.01, b=.005
  a, b = gs.fit_log_linear(flops, values)
  np.testing.assert_allclose((a, b), (0.01, 0.005), atol=1e-12)
  # 0.01 + 0.005 x = 0.1  ->  x = 18
  np.testing.assert_allclose(gs.crossing_flops(a, b, 0.1), 1e18, rtol=1e-9)
  assert gs.crossing_flops(0.05, 0.0, 0.1) is None
  assert gs.crossing_flops(0.05, -0.01, 0.1) is None
  with pytest.raises(ValueError):
    gs.fit_log_linear([1e12], [0.01])
  # The report's lines: an extrapolation from n points, "never" for a falling line.
  pts = [("x", 1e12, 0.07), ("y", 1e13, 0.075), ("z", 1e14, 0.08)]
  _, lines = gs.extrapolation(pts, {"our SASRec": 0.0428, "the paper's GRAM": 0.1})
  text = "\n".join(lines)
  assert "Extrapolation, not a measurement" in text and "3 points" in text
  assert "within the measured range" in text  # SASRec below every point
  assert "1.00e18 FLOPs, 1e04x the largest budget" in text  # .06 + .005 x = .1 -> x = 18
  fit, lines = gs.extrapolation([("x", 1e12, 0.02), ("y", 1e13, 0.01)], {"s": 0.05})
  assert fit[1] < 0 and "never" in "\n".join(lines)
  assert gs.extrapolation([("x", 1e12, 0.02)], {"s": 0.05})[0] is None


def _fake_budget(archive, budget, ndcg, steps, flops_per_epoch):
  folder = archive / "amazon_beauty" / "scaling" / budget
  folder.mkdir(parents=True)
  records.write_json(str(folder / "metrics.json"), {
      "test/ndcg@10": ndcg, "test/recall@10": 2 * ndcg, "train/steps": steps,
      "data/batches_per_epoch": 100, "train/epochs": steps // 100, "best/epoch": 2,
      "model/params": 742784, "device": "cpu"})
  (folder / "metrics.jsonl").write_text("".join(
      json.dumps({"epoch": e + 1, "valid/ndcg@10": 0.01}) + "\n" for e in range(steps // 100)))
  records.write_json(str(folder / gs.FLOPS_FILE), {
      "budget": budget, "overrides": gs.BUDGETS[budget], "ids": "the run's own",
      "flops_per_epoch": flops_per_epoch, "batches_per_epoch": 100, "shapes": [], "params": 742784,
      "vocab_size": 8000, "devices": 1, "backend": "cpu", "jax": "0"})


def test_report_from_a_fake_archive_marks_pending_budgets(tmp_path):
  archive, out = tmp_path / "archive", tmp_path / "results" / "gram_scaling.md"
  _fake_budget(archive, "tiny_e2", 0.010, 200, 1e13)   # 2e13 training FLOPs
  _fake_budget(archive, "tiny_e10", 0.015, 300, 1e13)  # 3 epochs (early stop): 3e13
  runs = tmp_path / "runs"
  (runs / "amazon_beauty" / "scaling" / "d256_e10").mkdir(parents=True)
  (runs / "amazon_beauty" / "scaling" / "d256_e10" / "log.txt").write_text("error: diverged\n")
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.gram_scaling", "--norun", f"--runs_dir={runs}",
       f"--archive_dir={archive}", f"--out={out}", f"--sasrec_dir={tmp_path / 'none'}",
       "--sasrec_ndcg10=0.0428"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  text = out.read_text()
  rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
  assert "| 0.74M | 2 / 2 | 1.00e13 | 2.00e13 | 0.0100 | 0.0200 |" in rows["tiny_e2"]
  assert "| 3 / 2 | 1.00e13 | 3.00e13 | 0.0150 | 0.0300 |" in rows["tiny_e10"]
  assert "`epochs=10`" in rows["tiny_e10"] and "`patience=3`" in rows["tiny_e10"]
  assert "| pending |" in rows["d128_e10"]
  assert "error: diverged" in rows["d256_e10"]
  assert "given by hand (`--sasrec_ndcg10`" in text and "0.0428" in text
  assert "Extrapolation, not a measurement" in text and "2 points" in text
  assert "## Setup" in text and "--sasrec_ndcg10=0.0428" in text
  assert (tmp_path / "results" / "gram_scaling.png").stat().st_size > 0
  assert "<!-- notes:" in text


def test_xla_counts_the_flops_of_a_synthetic_train_step(tmp_path):
  config = gs.budget_config("synthetic", {"epochs": 1}, str(tmp_path))
  counted = gs.measure_flops(config, str(tmp_path / "ids"))
  assert counted["flops_per_epoch"] > 0 and counted["params"] > 0
  assert sum(s["batches"] for s in counted["shapes"]) == counted["batches_per_epoch"]
  assert all(s["flops"] > 0 for s in counted["shapes"])
  np.testing.assert_allclose(
      counted["flops_per_epoch"], sum(s["batches"] * s["flops"] for s in counted["shapes"]))
