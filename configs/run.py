"""A trained run's own config, read from its workdir: `--config=configs/run.py:WORKDIR`.

main.py uses it for the modes that work on a trained run (eval, export, ...), so that
`--config.data.path=...` overrides apply to the run's own config without a config file.
Where the workdir holds no config.json yet, the defaults stand in, so the command line
still parses and the mode itself says that the workdir holds no run. The settings of
those modes (`MODE_GROUPS`) that a run's config.json lacks (runs trained before a
block or field existed) come from configs/default.py, so they can be overridden too.
"""

import json
import os

import ml_collections

from configs import default

MODE_GROUPS = ('export', 'compress')


def _with_defaults(saved: dict, defaults: dict) -> dict:
  """`saved` with the fields it lacks taken from `defaults` (nested dicts merged)."""
  merged = dict(defaults)
  for key, value in saved.items():
    both = isinstance(value, dict) and isinstance(defaults.get(key), dict)
    merged[key] = _with_defaults(value, defaults[key]) if both else value
  return merged


def get_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return default.get_config()
  if not isinstance(saved, dict):  # the mode itself names the damaged file
    return default.get_config()
  defaults = default.get_config().to_dict()
  for group in MODE_GROUPS:
    saved[group] = _with_defaults(saved.get(group, {}), defaults[group])
  return ml_collections.ConfigDict(saved)
