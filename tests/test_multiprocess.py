"""Several processes on JAX's distributed runtime (localhost, gloo CPU collectives) == one process.

Each job here is two `launch.py` processes with 2 fake CPU devices each (a 4-device global mesh),
compared with one process of 4 devices: parameters after the same steps, evaluation metrics, a
killed process ending the job (bounded wait) and its resume, and a refused mismatched config.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.test_checkpoint import _load, _stable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SASREC = ["--config=configs/sasrec.py:synthetic", "--config.progress=False",
          "--config.batch_size=256", "--config.max_len=5", "--config.model.hidden=16",
          "--config.model.inner=32", "--config.num_train_steps=40",
          "--config.checkpoint_every_steps=10", "--config.eval_batch_size=512"]
TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(tmp_path, devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
              RECSYS_HEARTBEAT_TIMEOUT_S="10", RECSYS_INITIALIZATION_TIMEOUT_S="60")


def _start_job(tmp_path, args, workdir, extra=((), ())) -> list[subprocess.Popen]:
  """Two processes of one job; extra[k]: flags only process k gets."""
  port = _free_port()
  procs = []
  for k in range(2):
    log = open(tmp_path / f"{os.path.basename(workdir)}-{k}-{time.time_ns()}.log", "w")
    procs.append(subprocess.Popen(
        [sys.executable, "launch.py", *args, *extra[k], f"--workdir={workdir}",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={k}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path, 2)))
    procs[-1].log_path = log.name
  return procs


def _wait(procs, timeout=TIMEOUT_S) -> list[int]:
  deadline = time.time() + timeout
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f"a process of the job hung past {timeout} s: {_tail(p)}")
  return codes


def _tail(p, chars=3000) -> str:
  return open(p.log_path).read()[-chars:]


def _single(tmp_path, args, workdir, devices=4):
  result = subprocess.run([sys.executable, "launch.py", *args, f"--workdir={workdir}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=_env(tmp_path, devices))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.load(open(os.path.join(workdir, "metrics.json")))


def _assert_same_params(workdir_a, workdir_b, kind="latest"):
  (step_a, a), (step_b, b) = _load(workdir_a, kind), _load(workdir_b, kind)
  assert step_a == step_b
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  # The same global batches over 4 devices; the gradient all-reduce runs in another order (gloo
  # across processes), so values agree to float32 round-off amplified by Adam's normalisation: the
  # attention key bias, whose gradient is round-off alone (softmax ignores it), moves by ~1e-5.
  for key in flat_a:
    np.testing.assert_allclose(flat_a[key], flat_b[key], rtol=1e-4, atol=5e-5, err_msg=str(key))


@pytest.fixture(scope="module")
def two_process_sasrec(tmp_path_factory):
  """(one-process workdir, its metrics, two-process workdir, its metrics, tmp folder)."""
  tmp = tmp_path_factory.mktemp("mp")
  single = _single(tmp, SASREC, str(tmp / "single"))
  procs = _start_job(tmp, SASREC, str(tmp / "multi"))
  assert _wait(procs) == [0, 0], _tail(procs[0]) + _tail(procs[1])
  multi = json.load(open(tmp / "multi" / "metrics.json"))
  return str(tmp / "single"), single, str(tmp / "multi"), multi, tmp


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_two_processes_train_the_parameters_and_metrics_of_one(two_process_sasrec):
  single_dir, single, multi_dir, multi, _ = two_process_sasrec
  assert multi["devices"] == single["devices"] == 4
  for key, value in _stable(single).items():
    if key.startswith(("test/", "valid/")):
      assert multi[key] == pytest.approx(value, abs=1e-6), key
  _assert_same_params(single_dir, multi_dir, "latest")
  _assert_same_params(single_dir, multi_dir, "best")
  # One process wrote the job's files: one metrics.jsonl line per validation, not two.
  lines = [json.loads(line) for line in open(os.path.join(multi_dir, "metrics.jsonl"))]
  assert [r["step"] for r in lines] == [40]


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_a_killed_process_ends_the_job_and_the_same_command_resumes(two_process_sasrec, tmp_path):
  _, _, reference_dir, reference, tmp = two_process_sasrec
  workdir = str(tmp_path / "killed")
  procs = _start_job(tmp, SASREC, workdir)
  latest = os.path.join(workdir, "checkpoints", "latest")
  deadline = time.time() + TIMEOUT_S
  while time.time() < deadline and all(p.poll() is None for p in procs) and not (
      os.path.isdir(latest) and any(n.isdigit() for n in os.listdir(latest))):
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.time()
  codes = _wait(procs, timeout=120)
  assert codes[1] == -signal.SIGKILL, "the job finished before it could be killed"
  assert codes[0] != 0, "the surviving process must not finish the job alone"
  assert time.time() - killed_at < 90  # the heartbeat timeout (10 s here) ends it, not a hang
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))

  procs = _start_job(tmp, SASREC, workdir)
  assert _wait(procs) == [0, 0], _tail(procs[0])
  assert "resumed from step" in _tail(procs[0], 10**6)
  resumed = json.load(open(os.path.join(workdir, "metrics.json")))
  assert _stable(resumed) == _stable(reference)
  _assert_same_params(reference_dir, workdir, "latest")


def test_processes_with_different_configs_are_refused(tmp_path):
  procs = _start_job(tmp_path, SASREC, str(tmp_path / "w"),
                     extra=((), ("--config.learning_rate=0.01",)))
  assert _wait(procs, timeout=120) == [2, 2]
  for p in procs:  # gloo's own log lines may come after ours
    errors = [line for line in _tail(p).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, _tail(p)
    assert errors[0].startswith("error: the processes of this job disagree on the config")
  assert not os.path.exists(tmp_path / "w" / "metrics.json")


@pytest.mark.slow  # the LAE family's mesh Gram == host Gram is in test_lae.py
def test_two_processes_solve_rdlae_as_one(tmp_path):
  args = ["--config=configs/lae.py:rdlae_synthetic", "--config.progress=False"]
  single = _single(tmp_path, args, str(tmp_path / "single"), devices=4)
  procs = _start_job(tmp_path, args, str(tmp_path / "multi"))
  assert _wait(procs) == [0, 0], _tail(procs[0])
  multi = json.load(open(tmp_path / "multi" / "metrics.json"))
  for key, value in single.items():
    if key.startswith("test/"):
      assert multi[key] == pytest.approx(value, abs=1e-6), key
