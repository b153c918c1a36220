"""launch.py end to end: the embedded default run, config overrides, and clear errors on bad input."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "launch.py", *args], cwd=cwd, capture_output=True, text=True,
                        timeout=600)


def test_default_synthetic_run_writes_metrics(tmp_path):
  result = launch("--config=configs/lae.py:rdlae_synthetic", f"--workdir={tmp_path}", "--config.progress=False")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.load(open(tmp_path / "metrics.json"))
  for key in ("test/recall@20", "test/recall@50", "test/ndcg@20", "test/ndcg@100", "test/head_recall@20",
              "test/tail_recall@20", "valid/ndcg@100", "time/solve_s", "test/precision@20",
              "test/urecall@20", "test/undcg@20", "test/uprecision@20", "test/urecall@10",
              "test/head_precision@100"):
    assert np.isfinite(metrics[key]), key
  assert metrics["test/recall@20"] > 0.2
  config = json.load(open(tmp_path / "config.json"))
  assert config["model"] == "rdlae" and config["dataset"] == "synthetic"


def test_override_changes_the_solve(tmp_path):
  result = launch("--config=configs/lae.py:ease_synthetic", f"--workdir={tmp_path}", "--config.lam=7",
                  "--config.progress=False")
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.load(open(tmp_path / "metrics.json"))["hparams/lam"] == 7.0


def _one_error_line(result) -> str:
  """The run ended with exit status 2, one `error:` line last on stderr and no traceback."""
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "\n" not in last
  return last


def test_unknown_config_key_is_refused_in_one_line(tmp_path):
  result = launch("--config=configs/lae.py:ease_synthetic", f"--workdir={tmp_path}", "--config.lamda=7")
  line = _one_error_line(result)
  assert "unknown config field lamda" in line and 'Did you mean "lam"' in line
  assert not (tmp_path / "metrics.json").exists()


def test_unknown_preset_wrong_type_and_out_of_range_are_refused_in_one_line(tmp_path):
  line = _one_error_line(launch("--config=configs/lae.py:ease_netflix", f"--workdir={tmp_path}"))
  assert "unknown preset 'ease_netflix'" in line
  line = _one_error_line(launch("--config=configs/lae.py:ease_synthetic", f"--workdir={tmp_path}",
                                "--config.lam=abc"))
  assert "--config.lam=abc" in line
  line = _one_error_line(launch("--config=configs/lae.py:rlae_synthetic", f"--workdir={tmp_path}",
                                "--config.xi=1.5"))
  assert line == "error: config.xi=1.5: must be in [0, 1] (ξ, the bound on diag(B))"
  assert not os.listdir(tmp_path)


def test_missing_data_dir_gives_one_line_and_exit_2(tmp_path):
  missing = tmp_path / "no_such_folder"
  result = launch("--config=configs/lae.py:ease_ml-100k_strong", f"--workdir={tmp_path}/run",
                  f"--config.data_dir={missing}")
  assert result.returncode == 2
  error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(error_lines) == 1 and str(missing) in error_lines[0] and "data_dir" in error_lines[0]
  assert not (tmp_path / "run" / "metrics.json").exists()


def test_malformed_file_names_file_and_line(tmp_path):
  folder = tmp_path / "data" / "gowalla_weak"
  folder.mkdir(parents=True)
  (folder / "train.txt").write_text("0 1 2\n1 2 x3\n")
  (folder / "test.txt").write_text("0 3\n1 1\n")
  result = launch("--config=configs/lae.py:ease_gowalla_weak", f"--workdir={tmp_path}/run",
                  f"--config.data_dir={tmp_path / 'data'}")
  assert result.returncode == 2
  assert "train.txt" in result.stderr and "line 2" in result.stderr


def test_search_mode_on_synthetic(tmp_path):
  result = launch("--config=configs/lae.py:rlae_synthetic", f"--workdir={tmp_path}", "--mode=search",
                  "--config.search.lam=(5.0,20.0,80.0)", "--config.search.xi=(0.1,0.3)", "--config.progress=False")
  assert result.returncode == 0, result.stderr[-2000:]
  lines = open(tmp_path / "search.jsonl").read().splitlines()
  assert len(lines) == 6
  best = max((json.loads(line) for line in lines), key=lambda r: r["valid/ndcg@100"])
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert (metrics["hparams/lam"], metrics["hparams/xi"]) == (best["lam"], best["xi"])
