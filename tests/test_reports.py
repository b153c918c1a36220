"""benchmarks/reports.py: reports keep their hand-written notes, paired tables match a hand-computed
case, and the archive of finished runs holds their small outputs and is read once a run folder is gone."""

import json
import os

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


def test_archived_files_name_no_machine_folders(tmp_path):
  """reports.portable: absolute paths become relative to the repository root; relative paths, URLs
  and plain text stay as they are."""
  root = "/srv/repo"
  value = {"data_dir": "/srv/shared/data", "n": 3, "runs": ["/srv/repo/runs/x", "../y", "a/b"],
           "command": "python launch.py --workdir=/srv/runs/z --config.data_dir=/srv/shared/data",
           "url": "https://example.org/a"}
  assert reports.portable(value, root) == {
      "data_dir": "../shared/data", "n": 3, "runs": ["runs/x", "../y", "a/b"],
      "command": "python launch.py --workdir=../runs/z --config.data_dir=../shared/data",
      "url": "https://example.org/a"}
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text('{"data_dir": "%s"}' % (tmp_path / "data"))
  (run / "metrics.json").write_text('{"test/recall@20": 0.5}')
  reports.archive_run(str(run), str(tmp_path / "archive"))
  archived = json.loads((tmp_path / "archive" / "config.json").read_text())
  assert archived["data_dir"] == os.path.relpath(str(tmp_path / "data"), reports.ROOT)
  assert not archived["data_dir"].startswith("/")
