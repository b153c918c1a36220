"""Run a grid of launch.py jobs a few at a time on one machine, until a deadline.

  python -m benchmarks.run_grid --jobs=grid.txt --parallel=8 --deadline_s=480

One accelerator runs SASRec's small steps far below its capacity, so several runs side by side
finish a grid sooner than one after another. grid.txt holds one job per line: its workdir, then
launch.py's flags (whitespace-separated; `#` starts a comment). A job whose WORKDIR/metrics.json
exists is skipped. At the deadline, jobs still running are stopped (SIGTERM, then SIGKILL); each
resumes from its last checkpoint when the grid runs again. Each job's output goes to
WORKDIR/grid.log; one line per start and finish goes to stdout.
"""

import os
import shlex
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds launch.py
_JOBS = flags.DEFINE_string("jobs", None, "file: one job per line, WORKDIR then launch.py flags")
_PARALLEL = flags.DEFINE_integer("parallel", 4, "jobs running at once")
_DEADLINE_S = flags.DEFINE_float("deadline_s", 0.0, "stop everything this many seconds after the "
                                 "start (0: no deadline)")
_PYTHON = flags.DEFINE_string("python", sys.executable, "interpreter that runs launch.py")
flags.mark_flag_as_required("jobs")


def read_jobs(path: str) -> list[tuple[str, list[str]]]:
  """[(workdir, launch.py flags)] in file order; blank and comment lines dropped."""
  jobs = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      words = shlex.split(line, comments=True)
      if not words:
        continue
      if not all(w.startswith("--") for w in words[1:]):
        raise ValueError(f"{path}:{number}: expected WORKDIR --flag=value ..., got {line.strip()!r}")
      jobs.append((words[0], words[1:]))
  return jobs


def finished(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, "metrics.json"))


def start(workdir: str, args: list[str]) -> subprocess.Popen:
  os.makedirs(workdir, exist_ok=True)
  command = [_PYTHON.value, os.path.join(ROOT, "launch.py"), f"--workdir={workdir}", *args]
  with open(os.path.join(workdir, "grid.log"), "a") as log:  # the child keeps its own copy
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
  """SIGTERM the job's process group, SIGKILL it after `grace_s`."""
  for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
    try:
      os.killpg(process.pid, sig)
    except ProcessLookupError:
      return
    try:
      process.wait(wait_s)
      return
    except subprocess.TimeoutExpired:
      continue


def main(argv):
  del argv
  begin = time.monotonic()
  elapsed = lambda: time.monotonic() - begin
  pending = [job for job in read_jobs(_JOBS.value) if not finished(job[0])]
  print(f"{len(pending)} jobs to run, {_PARALLEL.value} at once", flush=True)
  running: dict[str, tuple[subprocess.Popen, float]] = {}
  done, failed = [], []
  deadline = _DEADLINE_S.value or float("inf")
  while (pending or running) and elapsed() < deadline:
    while pending and len(running) < _PARALLEL.value:
      workdir, args = pending.pop(0)
      running[workdir] = (start(workdir, args), elapsed())
      print(f"[{elapsed():6.0f}s] start  {workdir}", flush=True)
    for workdir, (process, started) in list(running.items()):
      if process.poll() is None:
        continue
      del running[workdir]
      ok = process.returncode == 0 and finished(workdir)
      (done if ok else failed).append(workdir)
      print(f"[{elapsed():6.0f}s] {'done  ' if ok else 'FAILED'} {workdir} "
            f"({elapsed() - started:.0f}s, exit {process.returncode})", flush=True)
    time.sleep(1.0)
  for workdir, (process, _) in running.items():
    stop(process)
    print(f"[{elapsed():6.0f}s] stopped at the deadline: {workdir}", flush=True)
  print(f"finished {len(done)}, failed {len(failed)}, stopped {len(running)}, not started "
        f"{len(pending)} in {elapsed():.0f}s", flush=True)


if __name__ == "__main__":
  app.run(main)
