"""recsys_core/checkpoint.py: kill -9 and resume == uninterrupted; mismatched checkpoints are refused;
damaged ones are skipped for the previous one; a full disk leaves the previous ones intact; reading
writes nothing."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from recsys_core import train
from recsys_core.checkpoint import CheckpointMismatchError, Checkpoints, UnreadableCheckpointError
from recsys_core.errors import RecsysError
from recsys_core.workdir import DiskFullError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny and fast: 34 batches of 1024 per epoch; the validation at step 34 and the stop at step 60
# (with a final validation) make best and latest checkpoints, plus one every 20 steps.
COMMAND = [sys.executable, "launch.py", "--config=configs/sasrec.py:synthetic", "--config.progress=False",
           "--config.batch_size=1024", "--config.max_len=5", "--config.model.hidden=16",
           "--config.model.inner=32", "--config.num_train_steps=60", "--config.checkpoint_every_steps=20"]
VOLATILE = ("time/", "memory/")


def _env(tmp_path):
  """The three launches share JAX's compilation cache: compiling takes longer than training here."""
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"))


def _stable(record):
  return {k: v for k, v in record.items() if not k.startswith(VOLATILE)}


def _load(workdir, kind):
  """(step, state as numpy arrays) of the newest `kind` checkpoint, whatever devices saved it."""
  folder = os.path.join(workdir, "checkpoints", kind)
  step = max(int(name) for name in os.listdir(folder) if name.isdigit())
  path = os.path.join(folder, str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(path)
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return step, checkpointer.restore(path, restore_args=as_numpy)


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  env = _env(tmp_path)
  result = subprocess.run(COMMAND + [f"--workdir={straight}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]

  with open(tmp_path / "killed.log", "w") as log:
    process = subprocess.Popen(COMMAND + [f"--workdir={killed}"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    log_path = os.path.join(killed, "metrics.jsonl")
    deadline = time.time() + 300
    while not os.path.exists(log_path) and time.time() < deadline and process.poll() is None:
      time.sleep(0.02)  # kill right after the first validation, mid-way through epoch 1
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  assert not os.path.exists(os.path.join(killed, "metrics.json"))

  result = subprocess.run(COMMAND + [f"--workdir={killed}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from step" in result.stderr

  a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in (straight, killed))
  assert _stable(a) == _stable(b)
  lines = [[_stable(json.loads(line)) for line in open(os.path.join(d, "metrics.jsonl"))]
           for d in (straight, killed)]
  assert lines[0] == lines[1] and [r["step"] for r in lines[0]] == [34, 60]
  for kind in ("latest", "best"):
    (step_a, state_a), (step_b, state_b) = _load(straight, kind), _load(killed, kind)
    assert step_a == step_b
    flat_a, flat_b = (ocp.tree.to_flat_dict(s) for s in (state_a, state_b))
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:  # bitwise on CPU
      np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=str(key))


def test_mismatched_checkpoint_is_refused_naming_the_key(tmp_path):
  optimizer = optax.adam(1e-3)
  mesh = train.make_mesh()
  params = {"item_embedding": {"embedding": jnp.zeros((11, 4))}, "dense": {"kernel": jnp.ones(3)}}
  checkpoints = Checkpoints(str(tmp_path))
  checkpoints.save("best", train.replicate(train.create_state(params, optimizer, 0), mesh),
                   {"epoch": 3})
  target = train.replicate(train.create_state(params, optimizer, 0), mesh)
  state, meta = checkpoints.restore("best", target)
  assert meta == {"epoch": 3} and int(state.step) == 0

  bigger = {"item_embedding": {"embedding": jnp.zeros((12, 4))}, "dense": {"kernel": jnp.ones(3)}}
  with pytest.raises(CheckpointMismatchError,
                     match=r"params.item_embedding.embedding has shape \(11, 4\) in the checkpoint "
                           r"but \(12, 4\)"):
    checkpoints.restore("best", train.create_state(bigger, optimizer, 0))
  extra = dict(params, extra={"bias": jnp.zeros(2)})
  with pytest.raises(CheckpointMismatchError, match="lacks params.extra.bias"):
    checkpoints.restore("best", train.create_state(extra, optimizer, 0))
  with pytest.raises(CheckpointMismatchError, match="opt_state"):
    checkpoints.restore("best", train.create_state(params, optax.sgd(1e-3), 0))
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    checkpoints.restore("latest", target)


def _state(step, mesh):
  """A small TrainState at `step` whose parameters say which step it is."""
  params = {"dense": {"kernel": jnp.full((3,), float(step))}}
  state = train.create_state(params, optax.sgd(1e-3), 0).replace(step=jnp.asarray(step, jnp.int32))
  return train.replicate(state, mesh)


def _damage(workdir, kind, step, name="state/_sharding"):
  with open(os.path.join(workdir, "checkpoints", kind, str(step), name), "r+") as f:
    f.truncate(5)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  mesh = train.make_mesh()
  checkpoints = Checkpoints(str(tmp_path))
  for step in (10, 20, 30):
    checkpoints.save("latest", _state(step, mesh), {"at": step})
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints" / "latest")) == [20, 30]
  _damage(tmp_path, "latest", 30)
  checkpoints = Checkpoints(str(tmp_path))
  state, meta = checkpoints.restore("latest", _state(0, mesh))
  assert meta == {"at": 20} and int(state.step) == 20
  assert float(state.params["dense"]["kernel"][0]) == 20.0
  assert "latest/30 does not restore" in caplog.text and "_sharding" in caplog.text

  # The resumed run reaches step 30 again: its save replaces the damaged checkpoint.
  checkpoints.save("latest", _state(30, mesh), {"at": 30})
  state, meta = Checkpoints(str(tmp_path)).restore("latest", _state(0, mesh))
  assert meta == {"at": 30} and int(state.step) == 30

  _damage(tmp_path, "latest", 20)
  _damage(tmp_path, "latest", 30, "meta/metadata")
  with pytest.raises(UnreadableCheckpointError) as error:
    Checkpoints(str(tmp_path)).restore("latest", _state(0, mesh))
  message = str(error.value)
  assert "\n" not in message and "step 30" in message and "step 20" in message
  assert f"delete {tmp_path / 'checkpoints'}" in message and "new --workdir" in message


def test_a_damaged_best_checkpoint_is_one_line(tmp_path):
  mesh = train.make_mesh()
  Checkpoints(str(tmp_path)).save("best", _state(7, mesh), {"at": 7})
  _damage(tmp_path, "best", 7)
  with pytest.raises(RecsysError, match=r"best: no checkpoint restores \(step 7: .*_sharding"):
    Checkpoints(str(tmp_path)).restore("best", _state(0, mesh))


def test_a_full_disk_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
  mesh = train.make_mesh()
  checkpoints = Checkpoints(str(tmp_path))
  checkpoints.save("latest", _state(10, mesh), {"at": 10})

  async def no_space(self, directory, *args, **kwargs):
    # Before any array write starts: one still in flight would race the retry below, which real
    # runs make from a new process.
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "_METADATA"))
  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", no_space)
  with pytest.raises(DiskFullError, match=r"^no space left on device while writing \S+/latest/"
                     r"20\S*/_METADATA; free space and rerun the same command to resume$"):
    checkpoints.save("latest", _state(20, mesh), {"at": 20})
  monkeypatch.undo()
  state, meta = Checkpoints(str(tmp_path)).restore("latest", _state(0, mesh))
  assert meta == {"at": 10} and int(state.step) == 10
  checkpoints = Checkpoints(str(tmp_path))  # space again: the same step saves
  checkpoints.save("latest", _state(20, mesh), {"at": 20})
  assert checkpoints.step("latest") == 20


def test_reading_writes_nothing(tmp_path):
  checkpoints = Checkpoints(str(tmp_path / "run"))
  assert checkpoints.step("latest") is None and checkpoints.step("best") is None
  with pytest.raises(FileNotFoundError, match="no checkpoint; train first"):
    checkpoints.restore("best", _state(0, train.make_mesh()))
  checkpoints.close()
  assert not (tmp_path / "run").exists()
