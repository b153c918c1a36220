"""SASRec end to end through launch.py on the synthetic data: it learns, eval mode, bad checkpoints."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from recsys_core import metrics as metrics_lib
from recsys_core import readers
from recsys_core import splits
from seqrec import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(workdir, *args):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(workdir / "jax_cache"))
  return subprocess.run([sys.executable, "launch.py", "--config=configs/sasrec.py:synthetic",
                         "--config.progress=False", f"--workdir={workdir / 'run'}", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def _popularity_test_metrics():
  ds = readers.load_dataset("synthetic", "")
  counts = np.asarray(splits.leave_one_out(ds).train.sum(axis=0)).ravel().astype(np.float32)
  return metrics_lib.evaluate(lambda p, x: jnp.broadcast_to(p, x.shape), jnp.asarray(counts),
                              run.eval_sets(ds, False)["test"], (10, 20), normalization="size",
                              progress=False)


def test_one_epoch_beats_popularity_and_eval_mode_restores_the_best(tmp_path):
  result = launch(tmp_path, "--config.epochs=1")
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.load(open(tmp_path / "run" / "metrics.json"))
  popularity = _popularity_test_metrics()  # about .022 NDCG@10, .086 Recall@20
  assert out["test/ndcg@10"] > 3 * popularity["ndcg@10"], (out, popularity)
  assert out["test/recall@20"] > 2.5 * popularity["recall@20"], (out, popularity)
  assert out["best/epoch"] == 1 and out["test/num_users"] == 2000
  lines = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert len(lines) == 1 and lines[0]["valid/ndcg@10"] == out["valid/ndcg@10"]
  per_user = np.load(tmp_path / "run" / "test_per_user.npz")
  assert per_user["ndcg@10"].shape == (2000,)
  for name in ("ndcg@10", "recall@20"):
    assert np.nanmean(per_user[name]) == pytest.approx(out[f"test/{name}"], rel=1e-12), name

  trained_config = (tmp_path / "run" / "config.json").read_text()
  result = launch(tmp_path, "--mode=eval", "--config.ks=(5,10,20)")
  assert result.returncode == 0, result.stderr[-3000:]
  again = json.load(open(tmp_path / "run" / "eval.json"))
  for key in ("test/ndcg@10", "test/recall@20", "valid/ndcg@20"):
    assert again[key] == out[key], key
  assert "test/recall@5" in again and "test/recall@5" not in out
  assert (tmp_path / "run" / "config.json").read_text() == trained_config  # the run's record kept
  assert json.load(open(tmp_path / "run" / "eval_config.json"))["ks"] == [5, 10, 20]

  result = launch(tmp_path, "--mode=eval", "--config.model.hidden=16")
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "does not match the config" in errors[0] and "params." in errors[0], errors[0]
