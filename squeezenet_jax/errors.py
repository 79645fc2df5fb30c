"""The one exception type that main.py turns into a one-line message and exit code 2."""


class UserError(Exception):
  """Bad input from the user (config, data, workdir): reported without a traceback."""
