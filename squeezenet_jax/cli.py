"""Flag parsing for the command-line tools (main.py, the benchmarks): a bad flag, value,
config file or config field is one `error:` line and exit status 2, not absl's FATAL
lines or ml-collections' traceback.

Light on purpose (absl and ml-collections only): flag errors stay fast.
"""

import os
import sys
from typing import NoReturn

from absl import flags
from absl import logging

from squeezenet_jax import config_utils
from squeezenet_jax.errors import EXIT_USER_ERROR


def fail(message: str, code: int) -> NoReturn:
  """One `error:` line, then exit at once: orbax's writer threads may never end, and
  would print tracebacks of their own at interpreter shutdown."""
  logging.flush()
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)  # pylint: disable=protected-access


def parse_flags(argv: list[str], known_only: bool = False) -> list[str]:
  """absl's `flags.FLAGS(argv)`: the arguments left, or one `error:` line and exit 2."""
  for config_file in config_file_arguments(argv):
    problem = config_utils.config_file_problem(config_file)
    if problem:
      fail(problem, EXIT_USER_ERROR)
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except flags.UnrecognizedFlagError as e:
    fail_unknown_flag(e.flagname)
  except flags.Error as e:  # absl: `flag --top_k=abc: invalid literal for int() ...`
    fail(f'{e}; --helpshort lists the flags', EXIT_USER_ERROR)
  except (AttributeError, KeyError) as e:  # ml-collections: a field the config lacks
    fail(config_utils.unknown_field_message(e, argv), EXIT_USER_ERROR)


def fail_unknown_flag(name: str) -> NoReturn:
  fail(f'unknown command line flag {name!r}; --helpshort lists the flags', EXIT_USER_ERROR)


def config_file_arguments(argv: list[str]) -> list[str]:
  """Every value of `--config=X` (or `--config X`) in `argv` (absl takes the last)."""
  values = []
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':
      break
    if arg.startswith('--config='):
      values.append(arg.split('=', 1)[1])
    elif arg == '--config':
      values.append(argv[i + 1] if i + 1 < len(argv) else '')
  return values
