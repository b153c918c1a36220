"""The project's own error types: what `launch.py` reports as one line and exit status 2.

Anything else raised during a run (a shape bug inside numpy or JAX, say) is a defect of the code,
not of the user's input, and keeps its traceback (exit status 1).
"""


class RecsysError(Exception):
  """A run cannot go on for a reason the user can fix; the message says what and how, in one line."""


class DataError(RecsysError, ValueError):
  """Missing or malformed data; the message names the file (and line) and the fix."""


class MissingFileError(DataError, FileNotFoundError):
  """A data file (or folder) that is not there; the message names it and how to point at it."""


class ConfigError(RecsysError, ValueError):
  """A config field that is unknown, of the wrong type or out of range; the message names it."""


class DivergenceError(RecsysError, FloatingPointError):
  """Training or scoring produced NaN/inf (a learning rate too high, bad initial embeddings)."""
