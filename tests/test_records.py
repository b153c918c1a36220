"""Run records: atomic writes leave the old file or the new one, never half of one."""

import json
import os

import numpy as np
import pytest

from recsys_core import records


def test_write_json_and_arrays_round_trip(tmp_path):
  records.write_json(str(tmp_path / "a" / "m.json"), {"b": 1, "a": [1.5]})
  assert json.load(open(tmp_path / "a" / "m.json")) == {"a": [1.5], "b": 1}
  arrays = {"ndcg@10": np.array([0.5, np.nan]), "ids": np.arange(3, dtype=np.int32)}
  records.write_arrays(str(tmp_path / "u.npz"), arrays)
  loaded = np.load(tmp_path / "u.npz")
  assert set(loaded) == set(arrays)
  for name, value in arrays.items():
    np.testing.assert_array_equal(loaded[name], value)
    assert loaded[name].dtype == value.dtype


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
  path = str(tmp_path / "m.json")
  records.write_json(path, {"old": True})
  with pytest.raises(TypeError):
    records.write_json(path, {"new": object()})  # not JSON-serialisable: fails inside the write
  assert json.load(open(path)) == {"old": True}
  assert os.listdir(tmp_path) == ["m.json"]
