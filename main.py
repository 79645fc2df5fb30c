"""Command line entry: `python main.py --config=configs/x.py --workdir=DIR [--mode=...]`.

Bad input (unknown variant, bad value, missing data, a workdir of another run or in
use, a corrupt checkpoint) ends with one `error:` line and exit status 2; a failed
write (read-only or full disk) with one `error:` line and exit status 1; SIGTERM /
SIGINT with a checkpoint and exit status 143 / 130.

`eval`, `export`, `compress` and `predict` work on a trained run: its own config.json
is the base config (no `--config` needed), and `--config.data.*` (the data scored),
`--config.eval_batch_size` and the mode's own group (e.g. `--config.export.*`) may be
overridden on the command line.

Every config field and its value: add `--print_config`, e.g. `python main.py
--config=configs/default.py --print_config`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

MODES = ('train', 'eval', 'summary', 'sweep', 'export', 'compress', 'predict')
# Modes on a trained run, and the config groups each may override.
RUN_MODES = {'eval': ('data.', 'eval_batch_size'),
             'export': ('data.', 'eval_batch_size', 'export.'),
             'compress': ('data.', 'eval_batch_size', 'compress.'),
             'predict': ('data.', 'eval_batch_size')}
HELP_ARGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')
_RUN_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'run.py')

_CONFIG = config_flags.DEFINE_config_file('config', None, 'ml-collections config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the run keeps its files.')
_MODE = flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Continue a workdir whose config.json differs from --config.')
_TTA = flags.DEFINE_bool('tta', False, 'eval: also score mirrored-and-averaged logits (*_tta).')
_CHECKPOINT_FALLBACK = flags.DEFINE_bool(
    'checkpoint_fallback', False,
    'train, eval, export, compress, predict: if the latest checkpoint is corrupt, use the '
    'newest readable one.')
_FORMAT = flags.DEFINE_string(
    'format', None, 'predict: checkpoint, float32, bfloat16, int8, compressed, onnx, '
    'onnx_int8, stablehlo or a --mode=compress stage (pruned, shared, qat_int8, qat_int4) '
    '(default: float32 if exported, else the checkpoint).')
_TOP_K = flags.DEFINE_integer('top_k', 3, 'predict: classes shown per image.')
_JSON = flags.DEFINE_bool('json', False, 'predict: one JSON object per image, not a table.')
_SWEEP_WORKERS = flags.DEFINE_integer(
    'sweep_workers', 1, 'sweep: points trained at the same time, each in its own process on '
    'its own devices (GPUs split among them, or shared with a memory cap); 1: one after '
    'another in this process. With Ray: the most points scheduled at once.')
_SWEEP_LAUNCHER = flags.DEFINE_enum('sweep_launcher', 'local', ('local', 'ray'),
                                    'sweep: run the points on this machine, or as Ray tasks.')
_SWEEP_RAY_ADDRESS = flags.DEFINE_string(
    'sweep_ray_address', None, 'sweep with Ray: the cluster to use (auto, or host:port); '
    'default: start a local Ray instance.')
_SWEEP_GPUS_PER_POINT = flags.DEFINE_float(
    'sweep_gpus_per_point', None, 'sweep with Ray: GPUs per point, a fraction (0.25: four '
    'points share a GPU) or a count; 0 trains on CPUs; default 1 where there are GPUs.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'Multi-process: host:port of process 0 (else $JAX_COORDINATOR_ADDRESS; TPU pods and '
    'SLURM are detected by jax.distributed itself).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Multi-process: process count ($JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Multi-process: this process ($JAX_PROCESS_ID).')
_PRINT_CONFIG = flags.DEFINE_bool(
    'print_config', False, 'Print the resolved config (of --config, or the run\'s own for '
    'eval/export/compress/predict, with every --config.* override applied) and exit.')


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of `--name=V` or `--name V` in argv, before absl parses it."""
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def with_home_expanded(argv: list[str]) -> list[str]:
  """`--workdir=~/runs/x` as the user meant it: the shell leaves a `~` after `=` as is."""
  return [f'--workdir={os.path.expanduser(arg.split("=", 1)[1])}'
          if arg.startswith('--workdir=') else arg for arg in argv]


def with_run_config(argv: list[str]) -> list[str]:
  """For modes on a trained run without --config: the run's config.json is the config.

  So `--config.data.path=...` overrides parse against the run's own fields.
  """
  mode, workdir = _flag_value(argv, 'mode'), _flag_value(argv, 'workdir')
  if mode in RUN_MODES and workdir and _flag_value(argv, 'config') is None:
    return [argv[0], f'--config={_RUN_CONFIG}:{workdir}', *argv[1:]]
  return argv


def _run_overrides(mode: str) -> dict:
  """The `--config.*` overrides of a mode on a trained run, checked against its groups."""
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if _CONFIG.value is None:
    return {}
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  allowed = RUN_MODES[mode]
  for field in overrides:
    if not field.startswith(allowed):
      takes = ', '.join(f'--config.{p}*' if p.endswith('.') else f'--config.{p}'
                        for p in allowed)
      raise UserError(f'--mode={mode} works on the run\'s own model and recipe: '
                      f'--config.{field} cannot change them (it takes {takes})')
  return overrides


def _run(mode: str, workdir: str, paths: list[str]) -> None:
  # Imported here so that `--help` and flag errors stay fast.
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  fallback = _CHECKPOINT_FALLBACK.value
  if mode == 'predict':
    from squeezenet_jax.modes import predict  # pylint: disable=g-import-not-at-top
    if not paths:
      raise UserError('--mode=predict needs image files, folders or archives after the flags')
    predict.run(workdir, _run_overrides(mode), paths, fmt=_FORMAT.value, top_k=_TOP_K.value,
                as_json=_JSON.value, fallback=fallback)
    return
  if mode == 'eval':
    from squeezenet_jax.modes import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.run(workdir, _run_overrides(mode), tta=_TTA.value, fallback=fallback)
    return
  if mode == 'export':
    from squeezenet_jax.modes import export  # pylint: disable=g-import-not-at-top
    export.run(workdir, _run_overrides(mode), fallback=fallback)
    return
  if mode == 'compress':
    from squeezenet_jax.modes import compress  # pylint: disable=g-import-not-at-top
    defaults = _CONFIG.value.get('compress') if _CONFIG.value is not None else None
    compress.run(workdir, _run_overrides(mode), defaults=defaults, fallback=fallback)
    return
  if _CONFIG.value is None:
    raise UserError(f'--mode={mode} needs --config=configs/<name>.py')
  if mode == 'summary':
    from squeezenet_jax.modes import summary  # pylint: disable=g-import-not-at-top
    summary.run(_CONFIG.value, workdir)
  elif mode == 'sweep':
    from squeezenet_jax import sweep_launchers  # pylint: disable=g-import-not-at-top
    from squeezenet_jax import sweeps  # pylint: disable=g-import-not-at-top
    from squeezenet_jax.modes import sweep  # pylint: disable=g-import-not-at-top
    # Before anything initialises JAX's devices: the launcher sets how they are shared.
    launcher = sweep_launchers.make_launcher(
        _SWEEP_LAUNCHER.value, _SWEEP_WORKERS.value, ray_address=_SWEEP_RAY_ADDRESS.value,
        gpus_per_point=_SWEEP_GPUS_PER_POINT.value)
    config_flag = flags.FLAGS['config']
    sweep.run(_CONFIG.value, workdir,
              sweeps.load_sweep(config_flags.get_config_filename(config_flag)),
              fixed=config_flags.get_override_values(config_flag),
              allow_config_change=_ALLOW_CONFIG_CHANGE.value, launcher=launcher)
  else:
    from squeezenet_jax.training import loop  # pylint: disable=g-import-not-at-top
    loop.train_and_evaluate(_CONFIG.value, workdir,
                            allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                            checkpoint_fallback=fallback)


def _fail(message: str, code: int) -> None:
  """One `error:` line, then exit at once: orbax's writer threads may never end, and
  would print tracebacks of their own at interpreter shutdown."""
  logging.flush()
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)  # pylint: disable=protected-access


def _print_config(mode: str, workdir: str | None) -> None:
  """The config the mode would run with, every field, as YAML."""
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if mode in RUN_MODES and _flag_value(sys.argv, 'config') is None:
    if not workdir:
      raise UserError(f'--mode={mode} --print_config needs --workdir (the run whose '
                      'config to print)')
    from squeezenet_jax.modes import evaluate  # pylint: disable=g-import-not-at-top
    config = evaluate.run_config(workdir, _run_overrides(mode))
  elif _CONFIG.value is None:
    raise UserError('--print_config needs --config=configs/<name>.py')
  else:
    config = _CONFIG.value
  sys.stdout.write(config.to_json(indent=2) + "\n")
  sys.stdout.flush()


def main(argv):
  if len(argv) > 1 and _MODE.value != 'predict':  # predict's image paths
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from squeezenet_jax.errors import UserError, WriteError  # pylint: disable=g-import-not-at-top
  if _PRINT_CONFIG.value:
    try:
      _print_config(_MODE.value, _WORKDIR.value)
    except UserError as e:
      _fail(str(e), 2)
    return
  if not _WORKDIR.value:
    _fail('--workdir is required: the folder where the run keeps (or kept) its files', 2)
  try:  # before JAX is imported: a bad value fails in a fraction of a second
    if _MODE.value in RUN_MODES:
      _run_overrides(_MODE.value)
    elif _CONFIG.value is not None:
      from squeezenet_jax import validation  # pylint: disable=g-import-not-at-top
      validation.validate(_CONFIG.value)
  except UserError as e:
    _fail(str(e), 2)
  from squeezenet_jax import runtime  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.training.preemption import Preempted  # pylint: disable=g-import-not-at-top
  try:
    runtime.setup(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                  process_id=_PROCESS_ID.value, verbose=flags.FLAGS['verbosity'].present)
    _run(_MODE.value, _WORKDIR.value, argv[1:])
  except UserError as e:
    _fail(str(e), 2)
  except Preempted as e:
    logging.warning('%s', e)
    sys.exit(e.exit_code)
  except WriteError as e:
    _fail(str(e), 1)
  except OSError as e:  # any other failed write: read-only or full disk
    _fail(f'could not write {e.filename or "to disk"}: {e.strerror or e}', 1)
  except KeyboardInterrupt:  # Ctrl-C before the trainer's own handler is installed
    _fail('interrupted; nothing of this command was saved beyond its last checkpoint', 130)


def _help(argv: list[str]) -> None:
  """absl's help, with exit status 0 (absl's own exits 1)."""
  full = '--helpfull' in argv
  app.usage(shorthelp=not full, writeto_stdout=True, exitcode=0)


if __name__ == '__main__':
  _argv = with_run_config(with_home_expanded(sys.argv))
  if any(a in HELP_ARGS for a in _argv[1:]):
    _help(_argv)
  app.run(main, argv=_argv)
