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
    detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
    raise UserError(f'{path} cannot be read as {what} ({type(e).__name__}'
                    f'{": " + detail if detail else ""}): {fix}') from None
