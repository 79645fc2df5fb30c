"""Before a run spends a GPU's lease: the versions, `import flax.nnx`, and the devices.

  python -m benchmarks.preflight [--platform=any|cpu|gpu] [--out=FILE.json]

Prints one line of versions and one of devices, and writes them to --out. Exits 1
with one `error:` line where flax.nnx does not import (flax before 0.12.10 under
jax 0.11), where JAX cannot start its backend (a CUDA plugin that does not load under
JAX_PLATFORMS=cuda), or where its devices are not on --platform: a GPU run must not
fall back to the CPU and spend its lease there. Takes a few seconds.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

DISTRIBUTIONS = ('jax', 'jaxlib', 'jax-cuda13-plugin', 'jax-cuda12-plugin', 'flax', 'optax',
                 'orbax-checkpoint', 'numpy', 'ml-collections', 'jax2onnx', 'onnx',
                 'onnxruntime', 'torch', 'torchvision')
# What --platform names, as jax.Device.platform says it.
PLATFORMS = {'cpu': 'cpu', 'gpu': 'gpu'}


class Failed(Exception):
  """One `error:` line."""


def versions() -> dict[str, str | None]:
  found = {'python': platform.python_version()}
  for name in DISTRIBUTIONS:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def check(required: str) -> dict[str, Any]:
  """The report; Failed where the run cannot use what it is meant to."""
  report: dict[str, Any] = {'versions': versions(),
                            'jax_platforms': os.environ.get('JAX_PLATFORMS')}
  try:
    import flax.nnx  # pylint: disable=g-import-not-at-top,unused-import
  except Exception as e:  # pylint: disable=broad-except
    raise Failed(f'flax {report["versions"]["flax"]} does not import flax.nnx under jax '
                 f'{report["versions"]["jax"]} ({type(e).__name__}: {e}): flax 0.12.10 or '
                 'newer is needed with jax 0.11 (carry it: benchmarks/carried.txt)') from e
  import jax  # pylint: disable=g-import-not-at-top
  try:
    devices = jax.devices()
  except Exception as e:  # pylint: disable=broad-except  # RuntimeError, or an assert
    plugins = [f'{n} {v}' for n, v in report['versions'].items() if 'cuda' in n and v]
    raise Failed(f'JAX cannot start its backend under JAX_PLATFORMS={report["jax_platforms"]} '
                 f'(CUDA plugin: {", ".join(plugins) or "none installed"}): '
                 f'{type(e).__name__}{": " if str(e) else ""}{e}'.splitlines()[0]) from e
  report['devices'] = [f'{d.platform}:{d.device_kind}' for d in devices]
  report['platform'] = devices[0].platform
  if required in PLATFORMS and report['platform'] != PLATFORMS[required]:
    raise Failed(f'JAX runs on {report["platform"]} ({", ".join(report["devices"])}), not '
                 f'{required}: check the CUDA plugin (jax-cuda12-plugin or jax-cuda13-plugin '
                 'matching the driver) and JAX_PLATFORMS')
  return report


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.preflight',
                                   description=__doc__.split('\n', 1)[0])
  parser.add_argument('--platform', choices=('any', *PLATFORMS), default='any')
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  try:
    report = check(args.platform)
    report['ok'] = True
  except Failed as e:
    report = {'versions': versions(), 'ok': False, 'error': str(e)}
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
      f.write('\n')
  print('preflight: ' + ', '.join(f'{k} {v}' for k, v in report['versions'].items() if v))
  if not report['ok']:
    print(f'error: {report["error"]}', file=sys.stderr)
    return 1
  print(f'preflight: devices {", ".join(report["devices"])}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
