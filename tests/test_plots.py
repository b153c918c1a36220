"""Shared plots: learning curves from metrics.jsonl records."""

import json

from recsys_core import plots


def test_learning_curves_from_run_folders(tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  with open(run / "metrics.jsonl", "w") as f:
    for epoch, value in ((1, .02), (2, .05), (3, .04)):
      f.write(json.dumps({"epoch": epoch, "valid/ndcg@10": value}) + "\n")
    f.write("\n")  # a blank line is skipped
  lines = plots.read_validations(str(run))
  assert [r["epoch"] for r in lines] == [1, 2, 3]
  assert plots.read_validations(str(tmp_path / "missing")) == []
  curves = {"a": lines, "empty": [], "other metric": [{"epoch": 1, "loss": 3.0}]}
  path = plots.plot_learning_curves(curves, "valid/ndcg@10", str(tmp_path / "p" / "c.png"))
  assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
