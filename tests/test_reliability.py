"""Runs that survive a shared cluster: one run per workdir (a lock), SIGTERM (preemption) saves and
exits to resume, a damaged latest checkpoint falls back to the previous one, a full disk ends in
one line with the earlier files intact. Resumed runs end with the metrics of uninterrupted ones."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from recsys_core import loop
from recsys_core import records
from recsys_core import train
from recsys_core import workdir as workdirs
from recsys_core.checkpoint import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As in tests/test_checkpoint.py: 34 batches an epoch, validations at steps 34 and 60, a checkpoint
# every 20 steps; latest keeps steps 40 and 60.
COMMAND = [sys.executable, "launch.py", "--config=configs/sasrec.py:synthetic", "--config.progress=False",
           "--config.batch_size=1024", "--config.max_len=5", "--config.model.hidden=16",
           "--config.model.inner=32", "--config.num_train_steps=60", "--config.checkpoint_every_steps=20"]
VOLATILE = ("time/", "memory/")
TIMEOUT_S = 300


def _stable(record):
  return {k: v for k, v in record.items() if not k.startswith(VOLATILE)}


def _results(workdir):
  """(metrics.json, metrics.jsonl lines) without timings."""
  final = _stable(json.load(open(os.path.join(workdir, "metrics.json"))))
  lines = [_stable(json.loads(line)) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return final, lines


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An uninterrupted run: (workdir, env); the launches share JAX's compilation cache."""
  root = tmp_path_factory.mktemp("reliability")
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"))
  result = subprocess.run(COMMAND + [f"--workdir={root / 'straight'}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not (root / "straight" / workdirs.LOCK_NAME).exists()
  return str(root / "straight"), env


# The workdir lock.

def test_a_second_run_is_refused_in_one_line_and_the_first_is_unharmed(tmp_path, straight):
  _, env = straight
  with workdirs.claim(str(tmp_path), "train"):  # this test's process is the first run
    lock = (tmp_path / workdirs.LOCK_NAME).read_text()
    holder = workdirs.holder(str(tmp_path))
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    (tmp_path / "config.json").write_text("first")
    result = subprocess.run(COMMAND + [f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT_S, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for part in (f"process {os.getpid()}", socket.gethostname(), holder["started"],
                 f"delete {tmp_path / workdirs.LOCK_NAME}"):
      assert part in errors[0], (part, errors[0])
    assert (tmp_path / workdirs.LOCK_NAME).read_text() == lock
    assert sorted(os.listdir(tmp_path)) == [workdirs.LOCK_NAME, "config.json"]
    assert (tmp_path / "config.json").read_text() == "first"
  assert not (tmp_path / workdirs.LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_with_a_log_line(tmp_path, caplog):
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait(timeout=60)
  (tmp_path / workdirs.LOCK_NAME).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": gone.pid, "started": "2026-01-01T00:00:00+00:00"}))
  with workdirs.claim(str(tmp_path), "search"):
    assert workdirs.holder(str(tmp_path))["pid"] == os.getpid()
  assert f"stale lock of process {gone.pid}" in caplog.text
  assert not (tmp_path / workdirs.LOCK_NAME).exists()
  assert os.listdir(tmp_path) == []


def test_a_lock_from_another_host_is_respected(tmp_path):
  info = {"host": "elsewhere", "pid": 1, "started": "2026-01-01T00:00:00+00:00"}
  (tmp_path / workdirs.LOCK_NAME).write_text(json.dumps(info))
  with pytest.raises(workdirs.WorkdirLockedError, match="on host elsewhere as process 1"):
    with workdirs.claim(str(tmp_path), "train"):
      pass
  assert json.loads((tmp_path / workdirs.LOCK_NAME).read_text()) == info
  with workdirs.claim(str(tmp_path), "eval"):  # eval reads only: no lock
    pass


def test_the_lock_is_released_on_an_exception_and_nested_claims_refused(tmp_path):
  with pytest.raises(RuntimeError, match="boom"):
    with workdirs.claim(str(tmp_path), "train"):
      with pytest.raises(workdirs.WorkdirLockedError):
        with workdirs.claim(str(tmp_path), "train"):
          pass
      raise RuntimeError("boom")
  assert not (tmp_path / workdirs.LOCK_NAME).exists()


def test_a_workdir_that_is_no_folder_is_one_line(tmp_path, straight, monkeypatch):
  _, env = straight
  (tmp_path / "file").write_text("x")
  result = subprocess.run(COMMAND + [f"--workdir={tmp_path / 'file'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = _error_lines(result.stderr)
  assert len(errors) == 1 and "is an existing file" in errors[0], errors
  for bad, message in ((tmp_path / "file" / "run", "lies under a file"),):
    with pytest.raises(workdirs.WorkdirError, match=message):
      workdirs.ensure_folder(str(bad))
  monkeypatch.setattr(os, "access", lambda *args: False)  # root may write anywhere
  with pytest.raises(workdirs.WorkdirError, match="is not writable"):
    with workdirs.claim(str(tmp_path), "eval"):
      pass


def test_eval_on_a_locked_workdir_writes_only_its_own_files(straight, tmp_path):
  workdir, env = straight
  run = str(tmp_path / "run")
  shutil.copytree(workdir, run)
  before = {name: open(os.path.join(run, name), "rb").read() for name in os.listdir(run)
            if os.path.isfile(os.path.join(run, name))}
  listing = sorted(os.walk(run))
  with workdirs.claim(run, "train"):  # a training run holds it
    result = subprocess.run(COMMAND + [f"--workdir={run}", "--mode=eval"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert {"eval.json", "eval_config.json", "eval_test_per_user.npz"} <= set(os.listdir(run))
  for name, content in before.items():
    assert open(os.path.join(run, name), "rb").read() == content, name
  new = {"eval.json", "eval_config.json", "eval_test_per_user.npz"}
  assert [(d, sorted(s), sorted(set(f) - new)) for d, s, f in sorted(os.walk(run))] == [
      (d, sorted(s), sorted(f)) for d, s, f in listing]


# Preemption.

def test_sigterm_saves_the_step_and_the_same_command_resumes(straight, tmp_path):
  workdir, env = straight
  run = str(tmp_path / "run")
  with open(tmp_path / "preempted.log", "w") as log:
    process = subprocess.Popen(COMMAND + [f"--workdir={run}"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    try:
      deadline = time.time() + TIMEOUT_S
      while (not os.path.exists(os.path.join(run, "metrics.jsonl")) and time.time() < deadline
             and process.poll() is None):
        time.sleep(0.02)  # right after the first validation (step 34), mid-way through epoch 1
      process.send_signal(signal.SIGTERM)
      status = process.wait(timeout=TIMEOUT_S)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait(timeout=60)
  output = (tmp_path / "preempted.log").read_text()
  assert status == loop.PREEMPTED_EXIT, output[-3000:]
  stopped = [line for line in output.splitlines() if line.startswith("preempted (SIGTERM) at step")]
  assert len(stopped) == 1 and "Traceback" not in output, output[-3000:]
  step = int(stopped[0].split()[4].rstrip(","))
  assert 34 <= step < 60, stopped
  assert Checkpoints(run).step("latest") == step
  assert not os.path.exists(os.path.join(run, "metrics.json"))
  assert not os.path.exists(os.path.join(run, workdirs.LOCK_NAME))

  result = subprocess.run(COMMAND + [f"--workdir={run}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resumed from step {step} " in result.stderr
  assert _results(run) == _results(workdir)


@pytest.mark.slow  # two jobs of two processes: about a minute
def test_sigterm_to_one_process_of_a_job_stops_all_at_one_step(tmp_path):
  from tests import test_multiprocess as mp  # pylint: disable=g-import-not-at-top
  args = [a.replace("num_train_steps=40", "num_train_steps=170") for a in mp.SASREC]
  run = str(tmp_path / "run")  # 134 steps an epoch: validations at 134 and 170
  procs = mp._start_job(tmp_path, args, run)
  deadline = time.time() + TIMEOUT_S
  while (not os.path.exists(os.path.join(run, "metrics.jsonl")) and time.time() < deadline
         and all(p.poll() is None for p in procs)):
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGTERM)  # JAX's preemption service tells process 0
  assert mp._wait(procs) == [loop.PREEMPTED_EXIT] * 2, mp._tail(procs[0])
  stopped = {[line for line in open(p.log_path).read().splitlines()
              if line.startswith("preempted (SIGTERM) at step")][-1] for p in procs}
  assert len(stopped) == 1, stopped  # the same step on both
  step = int(stopped.pop().split()[4].rstrip(","))
  assert 134 <= step < 170 and Checkpoints(run).step("latest") == step
  assert not os.path.exists(os.path.join(run, workdirs.LOCK_NAME))
  procs = mp._start_job(tmp_path, args, run)
  assert mp._wait(procs) == [0, 0], mp._tail(procs[0])
  assert f"resumed from step {step} " in open(procs[0].log_path).read()
  assert [json.loads(line)["step"] for line in open(os.path.join(run, "metrics.jsonl"))] == [134, 170]


# A toy regression trained in this process: the loop's behaviour at an exact step, in seconds.

class _Batches:
  num_batches = 5

  def epoch(self, epoch, start=0):
    for i in range(start, self.num_batches):
      x = np.random.default_rng([epoch, i]).normal(size=(8, 3)).astype(np.float32)
      yield {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32)}


def _train(workdir, on_step=None):
  """train_loop over 3 epochs of 5 steps; on_step(step) runs after each step's dispatch."""
  config = ml_collections.ConfigDict(dict(
      epochs=3, num_train_steps=0, eval_every_epochs=1, early_stop_metric="valid/score",
      patience=10, checkpoint_every_steps=0, progress=False))
  mesh = train.make_mesh(jax.devices()[:1])
  optimizer = optax.adam(0.1)
  state = train.replicate(train.create_state({"w": jnp.zeros(3)}, optimizer, 0), mesh)
  step_fn = train.make_train_step(
      lambda p, b, rng: (jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), {}), optimizer, mesh)

  def stepping(state, batch):
    state, metrics = step_fn(state, batch)
    if on_step:
      on_step(int(state.step))
    return state, metrics

  def validate(params):
    return {"valid/score": -float(jnp.sum((params["w"] - jnp.array([1.0, -2.0, 0.5])) ** 2))}

  checkpoints = Checkpoints(workdir)
  state, meta = loop.train_loop(config, workdir, state=state, step_fn=stepping, batches=_Batches(),
                                mesh=mesh, validate=validate, checkpoints=checkpoints)
  checkpoints.close()
  lines = [_stable(json.loads(line)) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return state, meta, lines


def _same_run(a, b):
  np.testing.assert_array_equal(np.asarray(a[0].params["w"]), np.asarray(b[0].params["w"]))
  assert a[1] == b[1] and a[2] == b[2]


@pytest.fixture(scope="module")
def toy_straight(tmp_path_factory):
  return _train(str(tmp_path_factory.mktemp("toy")))


@pytest.mark.parametrize("at", [3, 5, 15])  # mid-epoch, an epoch's last step, the last step
def test_sigterm_stops_after_the_step_it_arrives_in(tmp_path, toy_straight, at):
  def sigterm(step):
    if step == at:
      os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(loop.Preempted, match=f"at step {at},"):
    _train(str(tmp_path), sigterm)
  assert Checkpoints(str(tmp_path)).step("latest") == at
  _same_run(_train(str(tmp_path)), toy_straight)


def test_sigterm_outside_training_unwinds_at_once(tmp_path):
  handler = signal.getsignal(signal.SIGTERM)
  with pytest.raises(loop.Preempted, match="outside training"):
    with loop.preemptible(), workdirs.claim(str(tmp_path), "train"):
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(30)  # interrupted
  assert not (tmp_path / workdirs.LOCK_NAME).exists()
  assert signal.getsignal(signal.SIGTERM) == handler


# A damaged latest checkpoint.

def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one(straight, tmp_path):
  workdir, env = straight
  run = str(tmp_path / "run")
  shutil.copytree(workdir, run)
  os.unlink(os.path.join(run, "metrics.json"))
  steps = sorted(int(s) for s in os.listdir(os.path.join(run, "checkpoints", "latest")))
  assert steps == [40, 60]
  with open(os.path.join(run, "checkpoints", "latest", "60", "state", "_sharding"), "r+") as f:
    f.truncate(20)
  result = subprocess.run(COMMAND + [f"--workdir={run}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "latest/60 does not restore" in result.stderr and "resumed from step 40 " in result.stderr
  assert _results(run) == _results(workdir)
  json.load(open(os.path.join(run, "checkpoints", "latest", "60", "state", "_sharding")))  # rewritten


# A full disk.

def _no_space(path):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, toy_straight, monkeypatch):
  run = str(tmp_path)
  append = records.append_jsonl
  calls = []

  def full_on_the_second(path, record):  # metrics.jsonl of the validation at step 10
    calls.append(record["step"])
    if len(calls) == 2:
      with open(path, "a") as f:
        f.write('{"step": 10, "torn')  # what a full disk leaves
      _no_space(path)
    append(path, record)
  monkeypatch.setattr(records, "append_jsonl", full_on_the_second)
  with pytest.raises(workdirs.DiskFullError) as error:
    _train(run)
  assert str(error.value) == (f"no space left on device while writing {run}/metrics.jsonl; free "
                              "space and rerun the same command to resume")
  assert Checkpoints(run).step("latest") == 5  # the checkpoint before
  monkeypatch.undo()
  resumed = _train(run)
  _same_run(resumed, toy_straight)

  def full(*args, **kwargs):
    _no_space(os.path.join(run, "metrics.json"))
  monkeypatch.setattr(records, "write_atomic", full)
  with pytest.raises(workdirs.DiskFullError, match="metrics.json; free space"):
    loop.final_report(run, Checkpoints(run), resumed[0], resumed[1], [], {})
  assert not os.path.exists(os.path.join(run, "metrics.json"))


def test_claim_turns_any_full_disk_into_one_line(tmp_path):
  with pytest.raises(workdirs.DiskFullError, match=r"^no space left on device while writing "
                     r".*config.json; free space and rerun the same command to resume$"):
    with workdirs.claim(str(tmp_path), "train"):
      try:
        _no_space(str(tmp_path / "config.json"))
      except OSError as e:
        raise ValueError("a library's own wrapping") from e
  assert not (tmp_path / workdirs.LOCK_NAME).exists()
