"""A trained run's own config, read from its workdir: `--config=configs/run.py:WORKDIR`.

main.py uses it for the modes that work on a trained run (eval, export, ...), so that
`--config.data.path=...` overrides apply to the run's own config without a config file.
Where the workdir holds no config.json yet, the defaults stand in, so the command line
still parses and the mode itself says that the workdir holds no run.
"""

import json
import os

import ml_collections

from configs import default


def get_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError):
    return default.get_config()
