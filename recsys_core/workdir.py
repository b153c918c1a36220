"""A run's folder: usable (a writable folder), held by one training run at a time, full-disk errors.

`claim(workdir, mode)` wraps a run. Every mode gets a folder it can write (or one line saying why
not). Training modes ("train", "search") also take the lock file `DIR/.lock`, JSON
{"host", "pid", "started"}, created atomically (`O_CREAT | O_EXCL`): a second run on the same folder
stops at once with one line naming the holder, and the first is untouched. A lock whose holder is
gone (same host, process not alive) is taken over, with a log line; one held from another host is
respected, since its process cannot be checked from here. The lock is released when the block ends,
by an exception too. `--mode=eval` takes no lock: it only reads the checkpoints and writes its own
files beside them. In a job of several processes process 0 holds the lock for all of them.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
from typing import Iterator, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from recsys_core.errors import RecsysError

LOCK_NAME = ".lock"
TRAINING_MODES = ("train", "search")
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_HELD = set()  # lock files this process holds


class WorkdirError(RecsysError):
  """A --workdir that is not a writable folder."""


class WorkdirLockedError(WorkdirError):
  """Another run holds the workdir."""


class DiskFullError(RecsysError, OSError):
  """A write failed for lack of space (or quota); what was written before is intact."""

  def __init__(self, path: str):
    super().__init__(f"no space left on device while writing {path}; free space and rerun the "
                     "same command to resume")


def full_disk_error(error: BaseException) -> Optional[BaseException]:
  """`error`, or the error it was raised from, if it is ENOSPC/EDQUOT (orbax and tensorstore
  re-raise I/O errors as other types, keeping the text); else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in FULL_DISK:
      return error
    if any(os.strerror(code) in str(error) for code in FULL_DISK):
      return error
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def disk_full_as_error(path: str) -> Iterator[None]:
  """Re-raise a full-disk error of the block as one line (DiskFullError) naming the file (or `path`)."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as error:
    cause = full_disk_error(error)
    if cause is None:
      raise
    raise DiskFullError(getattr(cause, "filename", None) or path) from error


@contextlib.contextmanager
def claim(workdir: str, mode: str) -> Iterator[None]:
  """The block runs with `workdir` a writable folder, locked for this run in training modes.

  A full disk inside the block ends with one line (DiskFullError) rather than a traceback.

  Raises:
    WorkdirError: workdir is a file, lies under one, or cannot be written.
    WorkdirLockedError: another live run holds it (training modes).
  """
  with disk_full_as_error(workdir):
    ensure_folder(workdir)
    lock = _take(workdir) if mode in TRAINING_MODES else None
    try:
      yield
    finally:
      if lock:
        _release(*lock)


def ensure_folder(workdir: str) -> None:
  """Create `workdir` if needed; WorkdirError (one line) unless it is a folder this process can write."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except FileExistsError:
    raise WorkdirError(f"--workdir={workdir} is an existing file, not a folder; pass a folder "
                       "(new or a run's)") from None
  except NotADirectoryError:
    raise WorkdirError(f"--workdir={workdir} lies under a file, not a folder; pass a folder "
                       "path") from None
  except PermissionError:
    raise WorkdirError(f"--workdir={workdir} cannot be created (permission denied); pass a folder "
                       "you can write") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir={workdir} is not writable by this user; pass a folder you can "
                       "write")


def holder(workdir: str) -> Optional[dict]:
  """The lock's {"host", "pid", "started"}, None when unlocked ({} when unreadable)."""
  try:
    with open(os.path.join(workdir, LOCK_NAME)) as f:
      text = f.read()
  except FileNotFoundError:
    return None
  try:
    info = json.loads(text)
    return info if isinstance(info, dict) else {}
  except ValueError:
    return {}


def _take(workdir: str) -> Optional[tuple[str, str]]:
  """Process 0 creates the lock file; every process learns whether it could. Returns (path,
  content) to release, None on the other processes."""
  error = None
  lock = None
  if jax.process_index() == 0:
    try:
      lock = _create(workdir)
    except WorkdirError as e:
      error = e
  if jax.process_count() > 1:
    taken = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not taken and error is None:
      error = WorkdirLockedError(f"{workdir}: process 0 of this job could not lock it (see its "
                                 "error line)")
  if error is not None:
    raise error
  return lock


def _create(workdir: str) -> tuple[str, str]:
  path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
  content = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")})
  for _ in range(3):  # a stale lock taken over by another run in between: look again
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      _take_over_if_stale(workdir, path)
      continue
    except PermissionError:
      raise WorkdirError(f"--workdir={workdir} is not writable by this user (creating {path}); "
                         "pass a folder you can write") from None
    try:
      with os.fdopen(fd, "w") as f:
        f.write(content + "\n")
    except BaseException:  # a full disk, say: no empty lock left behind
      os.unlink(path)
      raise
    _HELD.add(path)
    return path, content + "\n"
  raise WorkdirLockedError(f"{path}: could not take the lock (other runs keep taking it); use "
                           "another --workdir")


def _take_over_if_stale(workdir: str, path: str) -> None:
  """Remove the lock at `path` if its holder is dead; else WorkdirLockedError naming it."""
  try:
    with open(path) as f:
      text = f.read()
  except FileNotFoundError:
    return  # released meanwhile
  try:
    info = json.loads(text)
    host, pid, started = info["host"], int(info["pid"]), info["started"]
  except (ValueError, KeyError, TypeError):
    raise WorkdirLockedError(
        f"{workdir} is locked by {path}, which is unreadable ({text[:60]!r}); if no run uses this "
        f"folder, delete {path} and rerun") from None
  if host != socket.gethostname() or _alive(pid) or path in _HELD:
    raise WorkdirLockedError(
        f"{workdir} is in use by the run started {started} on host {host} as process {pid}; wait "
        f"for it to end, use another --workdir, or, if that run is gone, delete {path}")
  # Move it aside, then check it is still the stale lock we read: another run may have taken it
  # over and locked the folder in between, in which case its lock goes back.
  aside = f"{path}.stale-{os.getpid()}"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return
  with open(aside) as f:
    moved = f.read()
  if moved != text:
    with contextlib.suppress(FileExistsError):
      os.link(aside, path)
  else:
    logging.warning("%s: taking over the stale lock of process %d on %s (started %s), which is no "
                    "longer running", workdir, pid, host, started)
  os.unlink(aside)


def _alive(pid: int) -> bool:
  if pid == os.getpid():
    return False  # a lock left by an earlier process with this pid (a restarted container)
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's process
  return True


def _release(path: str, content: str) -> None:
  """Delete the lock if it is still this run's."""
  _HELD.discard(path)
  try:
    with open(path) as f:
      if f.read() != content:
        return
    os.unlink(path)
  except FileNotFoundError:
    pass
