"""The errors a user sees as one `error:` line, and their exit statuses.

`UserError` (bad input: exit 2) and `WriteError` or any `OSError` (a failed write:
exit 1) become one line through `user_facing`, in main.py and the sweep worker
alike; `reading` makes a damaged file a UserError.
"""

import contextlib
from collections.abc import Iterator


class UserError(Exception):
  """Bad input from the user (config, data, workdir): reported without a traceback."""


class WriteError(Exception):
  """A file could not be written (read-only or full disk): one line, exit status 1."""


EXIT_OK, EXIT_WRITE_ERROR, EXIT_USER_ERROR = 0, 1, 2
ERROR_PREFIX = 'error: '


def user_facing(error: BaseException) -> tuple[str, int] | None:
  """(the `error:` line's message, the exit status) of `error`, or None where it is a
  bug (which keeps its traceback)."""
  if isinstance(error, UserError):
    return str(error), EXIT_USER_ERROR
  if isinstance(error, WriteError):
    return str(error), EXIT_WRITE_ERROR
  if isinstance(error, OSError):  # any other failed write: read-only or full disk
    return (f'could not write {error.filename or "to disk"}: {error.strerror or error}',
            EXIT_WRITE_ERROR)
  return None


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
