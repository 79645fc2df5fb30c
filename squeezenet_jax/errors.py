"""The exceptions main.py turns into one `error:` line (exit 2 for UserError, 1 for
WriteError), and `reading`, which makes a damaged file one of them."""

import contextlib
from collections.abc import Iterator


class UserError(Exception):
  """Bad input from the user (config, data, workdir): reported without a traceback."""


class WriteError(Exception):
  """A file could not be written (read-only or full disk): one line, exit status 1."""


@contextlib.contextmanager
def reading(path, what: str, fix: str) -> Iterator[None]:
  """Turns any failure to read `path` as `what` (truncated, damaged, hand-edited, of
  another model) into one UserError naming the file and `fix`, not a library traceback."""
  try:
    yield
  except (UserError, KeyboardInterrupt):
    raise
  except Exception as e:  # pylint: disable=broad-except  # each library has its own
    detail = first_line(e)
    raise UserError(f'{path} cannot be read as {what} ({type(e).__name__}'
                    f'{": " + detail if detail else ""}): {fix}') from None


def first_line(error: Exception, limit: int = 200) -> str:
  """An exception's first line, cut at a word boundary where it is long."""
  line = str(error).strip().splitlines()[0] if str(error).strip() else ''
  return line if len(line) <= limit else line[:limit].rsplit(' ', 1)[0] + ' ...'
