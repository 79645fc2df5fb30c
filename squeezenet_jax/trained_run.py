"""A trained run, for the modes that work on one (eval, export, compress, predict).

The run's config.json is the config, built here once per command: `--config.*`
arguments are typed by the run's own fields (ml-collections' parser), may change only
the groups the mode owns (`MODE_GROUPS`: the data scored, the batch it is scored in,
the mode's settings), never the model or the recipe, and are validated before
anything is read (`training.trainer.RestoredRun` then restores the run's checkpoint).

A workdir is read by the version of this code that wrote it: config.json must hold
every field the config of this version has.
"""

from pathlib import Path
from typing import Any, Sequence

import ml_collections
from absl import flags
from absl import logging
from ml_collections import config_flags

from squeezenet_jax import config_utils
from squeezenet_jax import errors
from squeezenet_jax import validation
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.errors import UserError

# The modes on a trained run, and the config fields (groups end in '.') each may set.
MODE_GROUPS = {'eval': ('data.', 'eval_batch_size', 'eval_tta_translate'),
               'export': ('data.', 'eval_batch_size', 'export.'),
               'compress': ('data.', 'eval_batch_size', 'compress.'),
               'predict': ('data.', 'eval_batch_size')}


def parse_args(workdir: str, args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
  """(`--config.*` overrides typed as the run's fields, the other arguments).

  E.g. `['--config.data.limit=3', 'cat.jpg']` -> `({'data.limit': 3}, ['cat.jpg'])`.
  """
  argv = ['main.py', *args]
  flag_values = flags.FlagValues()
  try:
    # `sys_argv`: the overrides ml-collections defines flags for.
    config_flags.DEFINE_config_dict('config', load_config(workdir),
                                    flag_values=flag_values, sys_argv=argv)
    rest = flag_values(argv)
  except flags.Error as e:
    raise UserError(errors.first_line(e)) from None
  except (AttributeError, KeyError) as e:  # ml-collections: an unknown field
    raise UserError(config_utils.unknown_field_message(e, argv)) from None
  return config_flags.get_override_values(flag_values['config']), rest[1:]


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json, refused where it lacks a field a run writes."""
  config = workdir_lib.load_config(workdir)
  validation.check_run_config(config, str(Path(workdir) / workdir_lib.CONFIG_FILE))
  return config


def config_for(workdir: str, mode: str, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """The run's config.json with a mode's overrides (dotted names), validated.

  `data.*` overrides may choose other images to score, never other held-out images
  or other inputs (`dataset_lib.check_run_override`); a `data.path` on a run trained
  from another source means that folder or archive, so the source becomes `folder`.
  """
  allowed = MODE_GROUPS[mode]
  for field in overrides:
    if not field.startswith(allowed):
      takes = ', '.join(f'--config.{p}*' if p.endswith('.') else f'--config.{p}'
                        for p in allowed)
      raise UserError(f'--mode={mode} works on the run\'s own model and recipe: '
                      f'--config.{field} cannot change them (it takes {takes})')
  config = load_config(workdir)
  overrides = dict(overrides)
  if ('data.path' in overrides and 'data.source' not in overrides
      and config.data.source != 'folder'):
    logging.warning('Scoring data.path=%s with data.source=folder (the run was trained '
                    'from data.source=%s).', overrides['data.path'], config.data.source)
    overrides['data.source'] = 'folder'
  for name, value in overrides.items():
    if name.startswith('data.') and name[len('data.'):] in config.data:
      dataset_lib.check_run_override(name[len('data.'):],
                                     config_utils.get_field(config, name), value)
    config_utils.set_field(config, name, value, '--config override')
  validation.validate(config)
  return config
