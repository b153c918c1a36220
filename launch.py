"""One entry point for every experiment of the project.

  python launch.py --config=configs/lae.py:ease_synthetic --workdir=runs/ease_synthetic
  python launch.py --config=configs/lae.py:rlae_ml-1m_strong --workdir=runs/x --mode=search --config.lam=70

Logs and writes the resolved config next to the results, initialises the runtime, dispatches to the
family's `run(config, workdir, mode)`, and turns data/config errors into one line and exit status 2.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from recsys_core import records
from recsys_core.dataset import DataError

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<family>.py:<preset>", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for the run's config, logs, metrics and checkpoints")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "search", "eval"],
                          "train: fit/train and evaluate; search: select hyperparameters on validation, "
                          "then test; eval: evaluate a finished run's checkpoint")
flags.mark_flags_as_required(["config", "workdir"])


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
  raise ValueError(f"config.family={family!r} has no runner; known: 'lae', 'sasrec', 'embed', "
                   "'gram'")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config.get("dtype") == "float64":
    jax.config.update("jax_enable_x64", True)
  logging.info("config:\n%s", config)
  logging.info("devices: %s", jax.devices())
  # --mode=eval keeps the training run's own config.json and records its config beside it.
  name = "eval_config.json" if _MODE.value == "eval" else "config.json"
  records.write_json(f"{_WORKDIR.value}/{name}", json.loads(config.to_json_best_effort()))
  try:
    metrics = _family_runner(config.family)(config, _WORKDIR.value, _MODE.value)
  except (DataError, FileNotFoundError, ValueError, FloatingPointError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
