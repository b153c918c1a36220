"""Checks of a resolved config before a run starts: values out of range and batch sizes that the
mesh cannot split end the run with one line naming the field and the fix (a `ConfigError`).

Unknown fields and wrong types are refused earlier, while the flags are parsed (ml_collections'
locked ConfigDict); `flag_error_line` turns those refusals into one line.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import ml_collections

from recsys_core import item_text
from recsys_core import loop
from recsys_core.errors import ConfigError

# field name (at any depth, and each element of a tuple of values, e.g. config.search.lam)
# -> (valid?, what a valid value is)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lam": (lambda v: v >= 0, ">= 0 (λ, the L2 weight)"),
    "xi": (lambda v: 0 <= v <= 1, "in [0, 1] (ξ, the bound on diag(B))"),
    "p": (lambda v: 0 <= v < 1, "in [0, 1) (p, the dropout probability)"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "attention_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "dropout_rate": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "patience": (lambda v: v >= 1, ">= 1"),
    "eval_every_epochs": (lambda v: v >= 1, ">= 1"),
    "num_train_steps": (lambda v: v >= 0, ">= 0 (0: no limit)"),
    "num_devices": (lambda v: v >= 0, ">= 0 (0: every device)"),
    "num_beams": (lambda v: v >= 1, ">= 1"),
    "alpha": (lambda v: v >= 0, ">= 0 (GF-CF's ideal low-pass weight)"),
    "gfcf_vectors": (lambda v: v >= 1, ">= 1 (GF-CF's singular vectors)"),
    "propensity_power": (lambda v: v > 0, "> 0 (official .5)"),
    "propensity_floor": (lambda v: 0 < v <= 1, "in (0, 1] (official .01)"),
}

# string field (at any depth) -> its allowed values, checked before any data is read (the seqrec
# fields' own lists are seqrec/data.py TRAIN_PREFIXES and seqrec/initialisers.py DEFINITIONS)
CHOICES: dict[str, tuple[str, ...]] = {
    "train_prefixes": ("all", "last"),
    "early_stop_rule": loop.EARLY_STOP_RULES,
    "id_init": ("normal", "uniform"),
    "text_template": item_text.TEMPLATES,
    "definition": ("paper", "ace_code"),
}


def check(config: ml_collections.ConfigDict, device_count: int) -> None:
  """Raise ConfigError for the first out-of-range field or unsplittable batch.

  Args:
    config: the resolved config of a run.
    device_count: devices of the whole job (`jax.device_count()`).
  """
  _check_ranges(config, "config")
  devices = config.get("num_devices") or device_count
  if devices > device_count:
    raise ConfigError(f"config.num_devices={devices} but the job has {device_count} devices; "
                      "use at most that many (0: all)")
  if config.get("family") not in ("sasrec", "gram"):
    return
  if config.get("pack_multiple"):
    if config.pack_multiple % devices:
      raise ConfigError(f"config.pack_multiple={config.pack_multiple} is not a multiple of the "
                        f"{devices} devices of the mesh; use a multiple of {devices} (or 0)")
  elif config.batch_size % devices:
    raise ConfigError(f"config.batch_size={config.batch_size} is not a multiple of the {devices} "
                      f"devices of the mesh; use a multiple of {devices} (or set "
                      "--config.num_devices)")


def _check_ranges(config: ml_collections.ConfigDict, prefix: str) -> None:
  for name, value in config.items():
    where = f"{prefix}.{name}"
    if isinstance(value, ml_collections.ConfigDict):
      _check_ranges(value, where)
      continue
    if name in CHOICES and isinstance(value, str) and value not in CHOICES[name]:
      raise ConfigError(f"{where}={value!r}: use one of {', '.join(CHOICES[name])}")
    if name not in RANGES or value is None or isinstance(value, (str, bool)):
      continue
    valid, wanted = RANGES[name]
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, (int, float)) and not valid(v):
        raise ConfigError(f"{where}={value!r}: must be {wanted}")


def flag_error_line(error: Exception) -> str:
  """One line for an error raised while the flags were parsed (e.g. --config.learning_rat=1 gives
  'unknown config field learning_rat (Did you mean "learning_rate" ...)')."""
  text = str(error).strip()
  if len(text) > 1 and text[0] in "'\"" and text[-1] == text[0]:  # KeyError's repr-style message
    text = text[1:-1]
  text = text.replace("\\n", "\n").replace("\\'", "'")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if isinstance(error, (AttributeError, KeyError)) and lines:
    name = re.search(r"['\"]([\w.]+)['\"]", lines[0])
    hint = re.search(r"Did you mean [^?]*\?", text)
    return (f"unknown config field {name.group(1) if name else lines[0]}"
            + (f" ({hint.group(0)})" if hint else ""))
  if len(lines) > 1:
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
  return lines[0] if lines else type(error).__name__
