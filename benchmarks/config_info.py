"""Resolved configs (and sweep points) with their model sizes, as JSON, for planning.

  python -m benchmarks.config_info '[{"config": "configs/x.py", "args": ["--config.a=1"],
                                      "sweep": false}, ...]'

prints one JSON list: per request `{"config": <resolved config>, "macs", "params"}`,
plus for sweeps `"points": [{"name", "overrides", "config", "macs", "params"}]`. The
command-line overrides are parsed as `main.py` parses them (an ml-collections config
flag); sweep points, their names and configs come from `squeezenet_jax.sweeps`, as
`--mode=sweep` makes them;
MACs per image and parameters are `--mode=summary`'s (`accounting.summarize`), for
every config in one process. `benchmarks/reproduce.py` runs it in a subprocess, so
that it imports none of the package itself.
"""

import copy
import json
import sys
from typing import Any

from absl import flags
from ml_collections import config_flags

from squeezenet_jax import accounting
from squeezenet_jax import config_utils
from squeezenet_jax import sweeps


def resolve(config_file: str, args: list[str]):
  """The config of `--config=config_file args...`, parsed with its own flag values."""
  argv = ['config_info', f'--config={config_file}', *args]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config file', flag_values=flag_values,
                                  sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def point_config(config, overrides: dict[str, Any]):
  """The sweep point's config: `config` with the point's overrides, as --mode=sweep sets them."""
  point = copy.deepcopy(config)
  for field, value in overrides.items():
    if field != sweeps.NAME_KEY:
      config_utils.set_field(point, field, value, 'a sweep point')
  return point


def sized(config) -> dict[str, Any]:
  """The resolved config, its model's MACs per image and its parameters."""
  summary = accounting.summarize(config)
  return {'config': json.loads(config.to_json()), 'macs': int(summary['macs']),
          'params': int(summary['total_params'])}


def describe(request: dict[str, Any]) -> dict[str, Any]:
  config = resolve(request['config'], request.get('args', []))
  info = sized(config)
  if request.get('sweep'):
    info['points'] = [
        {'name': sweeps.point_name(o), 'overrides': o, **sized(point_config(config, o))}
        for o in sweeps.load_sweep(request['config'])]
  return info


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit('usage: python -m benchmarks.config_info REQUESTS_JSON')
  print(json.dumps([describe(r) for r in json.loads(argv[1])]))


if __name__ == '__main__':
  main(sys.argv)
