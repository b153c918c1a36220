"""benchmarks/run_grid.py: job files, skipping finished runs, and stopping at the deadline.

The jobs here run a stand-in interpreter (a shell script given as --python) instead of launch.py, so
the scheduling is tested without training anything.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks import run_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Called as `FAKE launch.py --workdir=DIR --config.seconds=S`: sleeps S s, then writes DIR/metrics.json.
FAKE_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    dir=${2#--workdir=}; seconds=${3#--config.seconds=}
    sleep "$seconds" && echo '{}' > "$dir/metrics.json"
    """)


def test_read_jobs_skips_comments_and_names_a_malformed_line(tmp_path):
  path = tmp_path / "grid.txt"
  path.write_text("# a comment\n\nruns/a --config=x.py:p --config.seed=1  # trailing\n"
                  "runs/b --config=x.py:q\n")
  assert run_grid.read_jobs(str(path)) == [("runs/a", ["--config=x.py:p", "--config.seed=1"]),
                                           ("runs/b", ["--config=x.py:q"])]
  path.write_text("runs/a --config=x.py:p\nruns/b seed=1\n")
  with pytest.raises(ValueError, match=r"grid.txt:2: expected WORKDIR --flag=value"):
    run_grid.read_jobs(str(path))


def test_grid_runs_pending_jobs_skips_finished_ones_and_stops_at_the_deadline(tmp_path):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_PYTHON)
  fake.chmod(0o755)
  done_before, quick, slow = (tmp_path / name for name in ("done_before", "quick", "slow"))
  done_before.mkdir()
  (done_before / "metrics.json").write_text("{}")
  jobs = tmp_path / "grid.txt"
  jobs.write_text(f"{done_before} --config.seconds=0\n{quick} --config.seconds=0\n"
                  f"{slow} --config.seconds=60\n")
  out = subprocess.run([sys.executable, "-m", "benchmarks.run_grid", f"--jobs={jobs}", "--parallel=2",
                        "--deadline_s=4", f"--python={fake}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
  assert "2 jobs to run" in out                      # the finished one is skipped
  assert os.path.isfile(quick / "metrics.json")
  assert not os.path.exists(slow / "metrics.json")   # stopped at the deadline, not waited for
  assert "finished 1, failed 0, stopped 1, not started 0" in out
