"""One entry point for every experiment of the project.

  python launch.py --config=configs/lae.py:ease_synthetic --workdir=runs/ease_synthetic
  python launch.py --config=configs/lae.py:rlae_ml-1m_strong --workdir=runs/x --mode=search --config.lam=70

Several processes (one per host, or several on one machine) form one job through JAX's distributed
runtime; each runs the same command with its own --process_id:

  python launch.py --config=... --workdir=W --coordinator_address=HOST:PORT --num_processes=2 --process_id=K

Without those flags the runtime is initialised where a cluster is detected (SLURM or Open MPI with
several tasks; --distributed=on for a Cloud TPU pod slice, whose hosts JAX finds itself), and the
run is one process elsewhere.

Parses the flags, checks the config, initialises the runtime, writes the resolved config next to the
results and dispatches to the family's `run(config, workdir, mode)`. The project's own errors
(`recsys_core.errors.RecsysError`: bad data, bad config, a locked workdir, a full disk) end the run
with one line and exit status 2; a SIGTERM (a scheduler's preemption) stops training after the
current step with a checkpoint at that step and exit status 75 (`loop.PREEMPTED_EXIT`; the same
command resumes); anything else is a defect and keeps its traceback (exit status 1).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from recsys_core import config_checks
from recsys_core import distributed
from recsys_core import loop
from recsys_core import records
from recsys_core import workdir as workdirs
from recsys_core.errors import ConfigError, RecsysError

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<family>.py:<preset>", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for the run's config, logs, metrics and checkpoints")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "search", "eval"],
                          "train: fit/train and evaluate; search: select hyperparameters on validation, "
                          "then test; eval: evaluate a finished run's checkpoint")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "HOST:PORT of process 0, for a job of several processes")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the job")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0..num_processes-1")
_LOCAL_DEVICES = flags.DEFINE_list("local_device_ids", None,
                                   "the devices of this host that this process uses (default: all)")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "auto: initialise JAX's distributed runtime when the flags above are "
                                 "given or a SLURM / Open MPI job of several tasks is detected; on: "
                                 "always (JAX detects the cluster, e.g. a TPU pod slice); off: never")
flags.mark_flags_as_required(["config", "workdir"])

ERROR_EXIT = 2


def _family_runner(family: str):
  if family == "lae":
    from lae_jax import run as lae_run
    return lae_run.run
  if family == "sasrec":
    from seqrec import run as seqrec_run
    return seqrec_run.run
  if family == "embed":
    from recsys_core.embed import run as embed_run
    return embed_run.run
  if family == "gram":
    from gram_jax import run as gram_run
    return gram_run.run
  raise ConfigError(f"config.family={family!r} has no runner; known: 'lae', 'sasrec', 'embed', "
                    "'gram'")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(ERROR_EXIT)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad --config (unknown field, wrong type, unknown preset, missing
  file) reported as one line and exit status 2 instead of a traceback."""
  try:
    argv = flags.FLAGS(argv)
    _CONFIG.value.get("family")  # the config file is loaded on first use
    return argv
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
    _fail(config_checks.flag_error_line(error))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value, _LOCAL_DEVICES.value)
    if config.get("dtype") == "float64":
      jax.config.update("jax_enable_x64", True)
    config_checks.check(config, jax.device_count())
    runner = _family_runner(config.family)
    workdir = _WORKDIR.value
    distributed.check_same_job(config, workdir)
    logging.info("config:\n%s", config)
    logging.info("process %d of %d; devices: %s", jax.process_index(), jax.process_count(),
                 jax.devices())
    # --mode=eval keeps the training run's own config.json and records its config beside it.
    name = "eval_config.json" if _MODE.value == "eval" else "config.json"
    with loop.preemptible(), workdirs.claim(workdir, _MODE.value):  # lock, SIGTERM, full disk
      records.write_json(os.path.join(workdir, name), json.loads(config.to_json_best_effort()))
      metrics = runner(config, workdir, _MODE.value)
  except RecsysError as error:
    _fail(str(error))
  except loop.Preempted as preempted:
    print(preempted, file=sys.stderr)
    sys.exit(loop.PREEMPTED_EXIT)
  if jax.process_index() == 0:
    print(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
