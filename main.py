"""Command line entry: `python main.py --config=configs/x.py --workdir=DIR [--mode=...]`.

Bad input (unknown variant, bad batch size, missing data, a workdir of another run, a
corrupt checkpoint) ends with one `error:` line and exit status 2.
"""

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
_CHECKPOINT_FALLBACK = flags.DEFINE_bool(
    'checkpoint_fallback', False,
    'train: if the latest checkpoint is corrupt, resume from the newest readable one.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'Multi-process: host:port of process 0 (else $JAX_COORDINATOR_ADDRESS; TPU pods and '
    'SLURM are detected by jax.distributed itself).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Multi-process: process count ($JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Multi-process: this process ($JAX_PROCESS_ID).')


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
      from squeezenet_jax.modes import evaluate  # pylint: disable=g-import-not-at-top
      evaluate.run(workdir, _data_overrides(), tta=_TTA.value)
    else:
      from squeezenet_jax.modes import export  # pylint: disable=g-import-not-at-top
      export.run(workdir, _data_overrides())
    return
  if _CONFIG.value is None:
    raise UserError(f'--mode={mode} needs --config=configs/<name>.py')
  if mode == 'summary':
    from squeezenet_jax.modes import summary  # pylint: disable=g-import-not-at-top
    summary.run(_CONFIG.value, workdir)
  elif mode == 'sweep':
    from squeezenet_jax import sweeps  # pylint: disable=g-import-not-at-top
    from squeezenet_jax.modes import sweep  # pylint: disable=g-import-not-at-top
    config_flag = flags.FLAGS['config']
    sweep.run(_CONFIG.value, workdir,
              sweeps.load_sweep(config_flags.get_config_filename(config_flag)),
              fixed=config_flags.get_override_values(config_flag),
              allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  else:
    from squeezenet_jax.training import loop  # pylint: disable=g-import-not-at-top
    try:
      loop.train_and_evaluate(_CONFIG.value, workdir,
                              allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                              checkpoint_fallback=_CHECKPOINT_FALLBACK.value)
    except loop.Preempted as e:
      logging.warning('%s', e)
      sys.exit(e.exit_code)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from squeezenet_jax import runtime  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    runtime.setup(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                  process_id=_PROCESS_ID.value)
    _run(_MODE.value, _WORKDIR.value)
  except UserError as e:
    logging.flush()
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(main)
