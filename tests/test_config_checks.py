"""recsys_core/config_checks.py: out-of-range fields and unsplittable batches are refused by name;
flag-parsing failures become one line."""

import ml_collections
import pytest

from configs import gram as gram_configs
from configs import lae as lae_configs
from configs import sasrec as sasrec_configs
from recsys_core import config_checks
from recsys_core.errors import ConfigError


def _with(config, **fields):
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in fields.items():
    node = config
    *parents, name = dotted.split("__")
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


@pytest.mark.parametrize("preset", ["rdlae_synthetic", "ease_gowalla_strong"])
def test_presets_pass(preset):
  config_checks.check(lae_configs.get_config(preset), device_count=8)


def test_shipped_trained_presets_pass_on_one_and_eight_devices():
  for config in (sasrec_configs.get_config("amazon_beauty"), gram_configs.get_config("synthetic")):
    for devices in (1, 8):
      config_checks.check(config, device_count=devices)


@pytest.mark.parametrize("fields, message", [
    ({"lam": -1.0}, r"config.lam=-1.0: must be >= 0"),
    ({"xi": 1.5}, r"config.xi=1.5: must be in \[0, 1\]"),
    ({"p": 1.0}, r"config.p=1.0: must be in \[0, 1\)"),
    ({"search__lam": (10.0, -5.0)}, r"config.search.lam=\(10.0, -5.0\): must be >= 0"),
    ({"search__xi": (0.2, 2.0)}, r"config.search.xi=\(0.2, 2.0\)"),
])
def test_out_of_range_lae_fields_are_named(fields, message):
  with pytest.raises(ConfigError, match=message):
    config_checks.check(_with(lae_configs.get_config("rdlae_synthetic"), **fields), 1)


@pytest.mark.parametrize("fields, message", [
    ({"train_prefixes": "first"}, r"config.train_prefixes='first': use one of all, last"),
    ({"early_stop_rule": "loose"}, r"config.early_stop_rule='loose': use one of strict, recbole"),
    ({"init__id_init": "xavier"}, r"config.init.id_init='xavier': use one of normal, uniform"),
])
def test_unknown_choices_are_named(fields, message):
  config = sasrec_configs.get_config("synthetic")
  config_checks.check(config, device_count=1)
  with pytest.raises(ConfigError, match=message):
    config_checks.check(_with(config, **fields), device_count=1)


def test_batch_that_the_mesh_cannot_split_is_refused():
  config = _with(sasrec_configs.get_config("synthetic"), batch_size=250, pack_multiple=0)
  config_checks.check(config, device_count=2)
  with pytest.raises(ConfigError, match=r"config.batch_size=250 is not a multiple of the 8 devices"):
    config_checks.check(config, device_count=8)
  with pytest.raises(ConfigError, match=r"config.pack_multiple=4 is not a multiple of the 8"):
    config_checks.check(_with(config, pack_multiple=4), device_count=8)
  with pytest.raises(ConfigError, match=r"config.num_devices=16 but the job has 8 devices"):
    config_checks.check(_with(config, num_devices=16), device_count=8)
  with pytest.raises(ConfigError, match=r"config.model.dropout=1.0: must be in \[0, 1\)"):
    config_checks.check(_with(config, model__dropout=1.0), device_count=1)


def test_flag_errors_become_one_line():
  locked = ml_collections.ConfigDict({"learning_rate": 1.0}).lock()
  with pytest.raises(AttributeError) as error:
    locked.learning_rat = 2.0
  line = config_checks.flag_error_line(error.value)
  assert line.startswith("unknown config field learning_rat") and "learning_rate" in line
  assert "\n" not in line
  nested = ValueError("flag --config=x.py:y: Error whilst parsing config file:\n\n  Traceback ...\n"
                      "ValueError: unknown preset 'y'")
  assert config_checks.flag_error_line(nested) == (
      "flag --config=x.py:y: Error whilst parsing config file: ValueError: unknown preset 'y'")
