"""Command line entry: `python main.py --config=configs/x.py --workdir=DIR [--mode=...]`.

Bad input (unknown variant, bad batch size, missing data, a workdir of another run, a
corrupt checkpoint) ends with one `error:` line and exit status 2.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

MODES = ('train', 'eval', 'summary', 'sweep', 'export')

_CONFIG = config_flags.DEFINE_config_file('config', None, 'ml-collections config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the run keeps its files.')
_MODE = flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Continue a workdir whose config.json differs from --config.')
_TTA = flags.DEFINE_bool('tta', False, 'eval: average logits with the mirrored images.')


def _data_overrides() -> dict:
  """The `--config.data.*` overrides given on the command line, without the `data.` prefix."""
  if _CONFIG.value is None:
    return {}
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  return {k.split('.', 1)[1]: v for k, v in overrides.items() if k.startswith('data.')}


def _run(mode: str, workdir: str) -> None:
  # Imported here so that `--help` and flag errors stay fast.
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if mode in ('eval', 'export'):
    if mode == 'eval':
      from squeezenet_jax import evaluate  # pylint: disable=g-import-not-at-top
      evaluate.run(workdir, _data_overrides(), tta=_TTA.value)
    else:
      from squeezenet_jax import export  # pylint: disable=g-import-not-at-top
      export.run(workdir, _data_overrides())
    return
  if _CONFIG.value is None:
    raise UserError(f'--mode={mode} needs --config=configs/<name>.py')
  if mode == 'summary':
    from squeezenet_jax import summary  # pylint: disable=g-import-not-at-top
    summary.run(_CONFIG.value, workdir)
  elif mode == 'sweep':
    from squeezenet_jax import sweep  # pylint: disable=g-import-not-at-top
    sweep.run(flags.FLAGS['config'], workdir)
  else:
    from squeezenet_jax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(_CONFIG.value, workdir,
                             allow_config_change=_ALLOW_CONFIG_CHANGE.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from squeezenet_jax import runtime  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    runtime.setup()
    _run(_MODE.value, _WORKDIR.value)
  except UserError as e:
    logging.flush()
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(main)
