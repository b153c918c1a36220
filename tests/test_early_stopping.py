"""recsys_core/loop.py's early-stopping rules against hand-worked validation sequences."""

import pytest

from recsys_core import loop
from recsys_core.errors import ConfigError


def _run(values, patience, rule):
  """(best epoch, epoch training stops at) of a validation sequence under `rule`."""
  best, best_epoch, bad = None, None, 0
  for epoch, value in enumerate(values):
    if loop.improved(value, best, rule):
      best, best_epoch, bad = value, epoch, 0
    else:
      bad += 1
      if loop.patience_spent(bad, patience, rule):
        return best_epoch, epoch
  return best_epoch, None


VALUES = [.1, .1, .09, .1000004, .08, .07, .06]


def test_strict_rule_needs_a_larger_value_and_stops_after_patience_misses():
  # epoch 1 ties (a miss), epoch 2 misses again: 2 misses = patience.
  assert _run(VALUES, patience=2, rule="strict") == (0, 2)


def test_recbole_rule_counts_ties_at_four_decimals_and_stops_after_patience_plus_one():
  # RecBole's early_stopping: value >= best (metrics rounded to 4 decimals) resets the count, and
  # it stops once cur_step > stopping_step: epoch 1 ties, epoch 3 rounds to .1 and ties again,
  # then epochs 4, 5, 6 miss.
  assert _run(VALUES, patience=2, rule="recbole") == (3, 6)


def test_an_unknown_rule_is_a_config_error():
  with pytest.raises(ConfigError, match="config.early_stop_rule='loose'"):
    loop.improved(.1, .1, "loose")
