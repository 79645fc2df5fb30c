"""The one exception type that main.py turns into a one-line message and exit code 2."""


class UserError(Exception):
  """Bad input from the user (config, data, workdir): reported without a traceback."""


class WriteError(Exception):
  """A file could not be written (read-only or full disk): one line, exit status 1."""
