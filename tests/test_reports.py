"""benchmarks/reports.py: reports keep their hand-written notes, paired tables match a hand-computed
case, and the archive of finished runs holds their small outputs and is read once a run folder is gone."""

import json

import numpy as np

from benchmarks import reports
from recsys_core import records


def test_write_report_keeps_the_notes_below_the_marker(tmp_path):
  path = str(tmp_path / "r.md")
  reports.write_report(path, "# table v1")
  with open(path, "a") as f:
    f.write("hand-written analysis\n")
  reports.write_report(path, "# table v2")
  text = open(path).read()
  assert text.startswith("# table v2\n" + reports.NOTES_MARKER)
  assert "table v1" not in text and text.endswith("hand-written analysis\n")


def test_paired_table_hand_case():
  reference = {"recall@20": np.array([1.0, 1.0, 0.0, 1.0]), "ndcg@10": np.array([.5, .5, 0, np.nan])}
  other = {"recall@20": np.array([0.0, 1.0, 0.0, 0.0]), "ndcg@10": np.array([.5, 0, 0, .5])}
  rows = reports.paired_table(reference, {"B": other, "no ndcg": {"recall@20": other["recall@20"]}},
                              label="baseline")
  # recall@20: differences 1, 0, 0, 1 -> mean .5, SE std([1,0,0,1], ddof=1) / 2 = .57735 / 2
  # ndcg@10: users 0-2 only (NaN skipped): 0, .5, 0 -> mean 1/6, SE .288675 / sqrt(3)
  assert rows == ["| baseline | Δ recall@20 ± SE | z | Δ ndcg@10 ± SE | z | users |",
                  "|---|---|---|---|---|---|",
                  "| B | +0.5000 ± 0.2887 | +1.7 | +0.1667 ± 0.1667 | +1.0 | 3 |"]
  assert reports.paired_table(reference, {}) == []


def _finished_run(folder, recall):
  records.write_json(str(folder / "metrics.json"), {"test/recall@20": recall})
  (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
  records.write_arrays(str(folder / "test_per_user.npz"),
                       {"recall@20": np.arange(50) % 3 == 0, "ndcg@10": np.linspace(0, 1, 50)})
  (folder / "model").mkdir()
  (folder / "model" / "checkpoint").write_bytes(b"x" * 1000)


def test_archive_run_copies_the_small_outputs_only(tmp_path):
  run, archive = tmp_path / "run", tmp_path / "archive" / "a" / "seed0"
  run.mkdir()
  _finished_run(run, 0.25)
  reports.archive_run(str(run), str(archive))
  assert sorted(p.name for p in archive.iterdir()) == ["metrics.json", "metrics.jsonl",
                                                       "test_per_user.npz"]
  assert json.load(open(archive / "metrics.json")) == {"test/recall@20": 0.25}
  original, copy = np.load(run / "test_per_user.npz"), np.load(archive / "test_per_user.npz")
  assert set(copy.files) == set(original.files)
  for name in original.files:
    np.testing.assert_array_equal(copy[name], original[name])
    assert copy[name].dtype == original[name].dtype


def test_run_source_prefers_the_finished_folder_then_the_archive(tmp_path):
  run, archive = tmp_path / "run", tmp_path / "archive"
  run.mkdir()
  assert reports.run_source(str(run), str(archive)) == str(run)  # neither: the (training) folder
  _finished_run(run, 0.25)
  reports.archive_run(str(run), str(archive))
  assert reports.run_source(str(run), str(archive)) == str(run)
  (run / "metrics.json").unlink()  # a run restarted, or its folder cleaned
  assert reports.run_source(str(run), str(archive)) == str(archive)


def test_setup_block_names_hardware_versions_and_load():
  lines = reports.setup_block((1.0, 2.0, 3.0), (0.5, 0.25, 0.125), versions=("numpy",))
  assert lines[:2] == ["## Setup", ""] and lines[-1] == ""
  assert lines[2].startswith("- Hardware: ") and "GiB of memory" in lines[2]
  assert f"numpy {np.__version__}" in lines[3]
  assert lines[4] == "- Load average (1, 5, 15 min) before / after: 1.00, 2.00, 3.00 / 0.50, 0.25, 0.12."
