"""The LAE pipeline end to end on real data (skipped when ../shared/data is absent)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import lae as lae_configs
from recsys_core import metrics as metrics_lib
from recsys_core import readers
from lae_jax import run as lae_run
from lae_jax import solve

# Long real-data / reference-parity checks: `python -m pytest -q -m slow` (CI's second step).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ease_on_ml100k_end_to_end(data_dir, tmp_path):
  command = [sys.executable, "launch.py", "--config=configs/lae.py:ease_ml-100k_strong",
             f"--workdir={tmp_path}", f"--config.data_dir={data_dir}", "--config.progress=False"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert metrics["data/items"] > 1000 and metrics["data/test_users"] == 100
  # EASE on ML-100K (ratings >= 4, strong generalization) is far above popularity (~0.2 NDCG@100).
  assert 0.35 < metrics["test/ndcg@100"] < 0.7
  assert metrics["test/head_recall@20"] > metrics["test/tail_recall@20"]


def test_weak_training_row_scores_match_b_on_gowalla_subset(data_dir):
  """The weak-generalization shortcut (scores from the Woodbury factors) equals scoring with B."""
  _, split = readers.load_presplit("gowalla_weak", data_dir)
  users = np.arange(0, split.train.shape[0], 20)            # ~1.5k users, still fewer than items
  train = split.train[users]
  items = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)[:3000]
  train = train[:, items]
  scores, info = solve.fit_training_scores(train, "rdlae", lam=80.0, p=0.8, xi=0.09)
  b, _ = solve.fit(train, "rdlae", lam=80.0, p=0.8, xi=0.09, method="direct")
  assert info.method == "woodbury-rows"
  np.testing.assert_allclose(scores, train.toarray() @ np.asarray(b), atol=2e-4)


@pytest.mark.slow
def test_rdlae_gowalla_strong_paper_setting(data_dir):
  config = lae_configs.get_config("rdlae_gowalla_strong")
  config.data_dir, config.progress = data_dir, False
  split = lae_run.load_split(config)
  out = lae_run.fit_and_evaluate(config, split)
  assert out["solve/method"] == "woodbury"
  assert out["test/recall@20"] > 0.22
