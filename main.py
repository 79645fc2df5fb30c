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

from squeezenet_jax import cli

MODES = ('train', 'eval', 'summary', 'sweep', 'export', 'compress', 'predict')
RUN_MODES = ('eval', 'export', 'compress', 'predict')  # on a trained run: its config.json
HELP_ARGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')

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


def with_home_expanded(argv: list[str]) -> list[str]:
  """`--workdir=~/runs/x` as the user meant it: the shell leaves a `~` after `=` as is."""
  return [f'--workdir={os.path.expanduser(arg.split("=", 1)[1])}'
          if arg.startswith('--workdir=') else arg for arg in argv]


def _parse_flags(argv: list[str]) -> list[str]:
  """`cli.parse_flags`, but `--config.*` arguments of a mode on a trained run are left for
  the run's own config (`trained_run.parse_args`)."""
  rest = cli.parse_flags(argv, known_only=True)
  if _MODE.value not in RUN_MODES:
    unknown = [arg for arg in rest[1:] if arg.startswith('-')]
    if unknown:
      name = unknown[0].split('=', 1)[0].lstrip('-')
      cli.fail_unknown_flag(name)
  return rest


def _config(mode: str, workdir: str | None, args: list[str]):
  """(the config the mode runs with, the arguments left: predict's image paths).

  Checked here, before any data is read or anything written, so that a bad value
  fails in a second or two.
  """
  from squeezenet_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if mode in RUN_MODES:
    if flags.FLAGS['config'].present:
      raise UserError(f'--mode={mode} works on the run in --workdir with its own '
                      'config.json: leave out --config (its --config.* overrides apply to '
                      'the run\'s config)')
    if not workdir:
      raise UserError(f'--mode={mode} needs --workdir: the trained run to work on')
    from squeezenet_jax import trained_run  # pylint: disable=g-import-not-at-top
    overrides, rest = trained_run.parse_args(workdir, args)
    return trained_run.config_for(workdir, mode, overrides), rest
  if _CONFIG.value is None:
    raise UserError(f'--mode={mode} needs --config=configs/<name>.py')
  if args:
    raise UserError(f'unexpected arguments: {" ".join(args)} (only --mode=predict takes '
                    'image paths; flags are written --name=value)')
  from squeezenet_jax import validation  # pylint: disable=g-import-not-at-top
  validation.validate(_CONFIG.value)
  return _CONFIG.value, []


def _run(mode: str, workdir: str, config, paths: list[str]) -> None:
  # Imported here so that `--help` and flag errors stay fast.
  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.errors import UserError
  fallback = _CHECKPOINT_FALLBACK.value
  if mode == 'predict':
    from squeezenet_jax.modes import predict
    if not paths:
      raise UserError('--mode=predict needs image files, folders or archives after the flags')
    predict.run(workdir, config, paths, fmt=_FORMAT.value, top_k=_TOP_K.value,
                as_json=_JSON.value, fallback=fallback)
  elif mode == 'eval':
    from squeezenet_jax.modes import evaluate
    evaluate.run(workdir, config, tta=_TTA.value, fallback=fallback)
  elif mode == 'export':
    from squeezenet_jax.modes import export
    export.run(workdir, config, fallback=fallback)
  elif mode == 'compress':
    from squeezenet_jax.modes import compress
    compress.run(workdir, config, fallback=fallback)
  elif mode == 'summary':
    from squeezenet_jax.modes import summary
    summary.run(config, workdir)
  elif mode == 'sweep':
    from squeezenet_jax import sweep_launchers
    from squeezenet_jax import sweeps
    from squeezenet_jax.modes import sweep
    # Before anything initialises JAX's devices: the launcher sets how they are shared.
    launcher = sweep_launchers.make_launcher(
        _SWEEP_LAUNCHER.value, _SWEEP_WORKERS.value, ray_address=_SWEEP_RAY_ADDRESS.value,
        gpus_per_point=_SWEEP_GPUS_PER_POINT.value)
    config_flag = flags.FLAGS['config']
    sweep.run(config, workdir, sweeps.load_sweep(config_flags.get_config_filename(config_flag)),
              fixed=config_flags.get_override_values(config_flag),
              allow_config_change=_ALLOW_CONFIG_CHANGE.value, launcher=launcher)
  else:
    from squeezenet_jax.training import loop
    loop.train_and_evaluate(config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                            checkpoint_fallback=fallback)


def main(argv):
  from squeezenet_jax import errors  # pylint: disable=g-import-not-at-top
  mode, workdir = _MODE.value, _WORKDIR.value
  try:
    if not _PRINT_CONFIG.value and not workdir:
      raise errors.UserError('--workdir is required: the folder where the run keeps (or '
                             'kept) its files')
    config, paths = _config(mode, workdir, argv[1:])
    if _PRINT_CONFIG.value:
      sys.stdout.write(config.to_json(indent=2) + '\n')
      sys.stdout.flush()
      return
    from squeezenet_jax import runtime  # pylint: disable=g-import-not-at-top
    from squeezenet_jax.training.preemption import Preempted  # pylint: disable=g-import-not-at-top
    try:
      runtime.setup(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                    process_id=_PROCESS_ID.value, verbose=flags.FLAGS['verbosity'].present)
      _run(mode, workdir, config, paths)
    except Preempted as e:
      logging.warning('%s', e)
      sys.exit(e.exit_code)
  except KeyboardInterrupt:  # Ctrl-C before the trainer's own handler is installed
    cli.fail('interrupted; nothing of this command was saved beyond its last checkpoint', 130)
  except Exception as e:  # pylint: disable=broad-except
    shown = errors.user_facing(e)
    if shown is None:
      raise
    cli.fail(*shown)


def _help(argv: list[str]) -> None:
  """absl's help, with exit status 0 (absl's own exits 1)."""
  full = '--helpfull' in argv
  app.usage(shorthelp=not full, writeto_stdout=True, exitcode=0)


if __name__ == '__main__':
  from squeezenet_jax import host  # pylint: disable=g-import-not-at-top
  host.with_huge_pages()  # first: it runs this command again with glibc's tunable
  _argv = with_home_expanded(sys.argv)
  if any(a in HELP_ARGS for a in _argv[1:]):
    _help(_argv)
  app.run(main, argv=_argv, flags_parser=_parse_flags)
