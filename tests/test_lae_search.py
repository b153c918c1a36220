"""--mode=search: each grid point's validation metrics equal a separate solve at that point, on both
routes (one eigendecomposition for LAE/EASE; one inverse per (lambda, p) scoring the whole xi grid)."""

import json

import pytest

from configs import lae as lae_configs
from lae_jax import run as lae_run
from recsys_core import splits, synthetic


@pytest.fixture(scope="module")
def split():
  return splits.strong_split(synthetic.make_synthetic(num_users=400, num_items=120, seed=2), 60, seed=0)


@pytest.mark.parametrize("model,grid,eigen_max_items,route", [
    ("rdlae", dict(lam=(5.0, 40.0), p=(0.2, 0.6), xi=(0.1, 0.5)), 20000, "inverse"),
    ("edlae", dict(lam=(5.0, 40.0), p=(0.2,)), 20000, "inverse"),
    ("rlae", dict(lam=(5.0, 40.0), xi=(0.1, 0.3, 0.9)), 20000, "inverse"),
    ("ease", dict(lam=(5.0, 40.0, 300.0)), 20000, "eigen"),
    ("lae", dict(lam=(5.0, 40.0)), 10, "inverse"),   # more items than eigen_max_items
])
def test_every_point_equals_a_separate_solve(tmp_path, split, model, grid, eigen_max_items, route):
  config = lae_configs.get_config(f"{model}_synthetic")
  config.progress = False
  config.search.update(grid)
  config.search.eigen_max_items = eigen_max_items
  best, stats = lae_run.search(config, split, str(tmp_path))
  points = [json.loads(line) for line in open(tmp_path / "search.jsonl")]
  size = 1
  for axis in grid.values():
    size *= len(axis)
  solves = 1 if route == "eigen" else len(grid["lam"]) * len(grid.get("p", (0,)))
  assert (stats["search/points"], stats["search/solves"], stats["search/route"]) == (size, solves, route)
  for point in points:
    separate = config.copy_and_resolve_references()
    separate.update({k: point[k] for k in grid})
    b, info = lae_run._fit(separate, split.train, separate.lam, separate.p, separate.xi)
    items = lae_run.item_statistics(separate, split.item_counts())
    valid = lae_run._evaluate_b(separate, b, split.valid, items, "valid")
    assert point["num_active"] == info.num_active or model in ("ease", "edlae")
    for key in ("valid/ndcg@100", "valid/recall@20", "valid/tail_recall@20", "valid/urecall@20"):
      assert point[key] == pytest.approx(valid[key], abs=2e-5), (point, key)
  chosen = max(points, key=lambda r: r["valid/ndcg@100"])
  assert best == {k: chosen[k] for k in grid}
