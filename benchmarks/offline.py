"""Offline installs from a folder of wheels (benchmarks/prepare_offline.sh), stdlib only.

A GPU machine without a package index gets what its image lacks as wheels carried
with the checkout (benchmarks/carried.txt). A wheel is installed, with `pip install
--no-index --no-deps --target SITE`, where its distribution is missing, or where it is
installed but broken: a `PROBES` module of it fails to import (flax before 0.12.10
under jax 0.11). So nothing that works in the image (jax, numpy, torch) is replaced;
SITE then goes first on sys.path and into PYTHONPATH for subprocesses. Modules are
probed by importing them in a subprocess, never in this one: it runs before any of
the package can.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

# Modules the project cannot start without; imported (in a subprocess) after any install.
REQUIRED_MODULES = ('absl', 'ml_collections', 'jax', 'flax.nnx', 'optax', 'orbax.checkpoint',
                    'numpy', 'PIL', 'matplotlib')
# An installed distribution whose module fails to import gets the carried wheel over it.
PROBES = {'flax': 'flax.nnx'}


def wheel_distribution(path: Path) -> str:
  """The distribution a wheel file installs (`ml_collections-1.1.0-py3-none-any.whl`)."""
  return path.name.split('-', 1)[0]


def is_installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)  # names are normalised (-, _, case)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def _normalised(distribution: str) -> str:
  return re.sub(r'[-_.]+', '-', distribution).lower()


_TRY_IMPORTS = """
import importlib, json, sys
failing = {}
for module in sys.argv[1:]:
  try:
    importlib.import_module(module)
  except Exception as e:  # pylint: disable=broad-except
    failing[module] = f'{type(e).__name__}: {e}'
print(json.dumps(failing))
"""


def failing_imports(modules) -> dict[str, str]:
  """{module: 'Error: message'} for each of `modules` that fails to import, tried in one
  fresh interpreter with this process's PYTHONPATH."""
  if not modules:
    return {}
  done = subprocess.run([sys.executable, '-c', _TRY_IMPORTS, *modules], capture_output=True,
                        text=True, check=False)
  if done.returncode:
    error = (done.stderr.strip().splitlines() or [f'exit status {done.returncode}'])[-1]
    return {module: error for module in modules}
  return json.loads(done.stdout.strip().splitlines()[-1])


def missing_wheels(wheels_dir: Path, broken=()) -> list[Path]:
  """The folder's wheels to install: the distribution is missing, or its `PROBES` module
  is among the `broken` ones (modules that failed to import)."""
  wheels = {}
  for path in sorted(Path(wheels_dir).glob('*.whl')):
    wheels.setdefault(_normalised(wheel_distribution(path)), path)
  return [path for name, path in wheels.items()
          if not is_installed(name) or PROBES.get(name) in broken]


def use_site(site: Path) -> None:
  """Puts SITE first for this process and for its subprocesses."""
  site = str(Path(site).absolute())
  if site not in sys.path:
    sys.path.insert(0, site)
  importlib.invalidate_caches()
  paths = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
  if site not in paths:
    os.environ['PYTHONPATH'] = os.pathsep.join([site, *paths])


def ensure(wheels_dir: Path, site: Path, log: Callable[[str], None] = print) -> list[str]:
  """Installs the folder's wheels that are missing into SITE; returns the files installed.

  One pip call per wheel, so that one that does not fit this Python (say a cp312 wheel
  under 3.11) is logged and skipped; RuntimeError if a required module still does not
  import.
  """
  if Path(site).is_dir():  # installed by an earlier run
    use_site(site)
  failing = failing_imports(sorted({*REQUIRED_MODULES, *PROBES.values()}))
  wheels = missing_wheels(wheels_dir, failing) if Path(wheels_dir).is_dir() else []
  installed, errors = [], []
  for wheel in wheels:
    command = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-index', '--no-deps',
               '--no-compile', '--disable-pip-version-check', '--upgrade',
               '--find-links', str(wheels_dir), '--target', str(site), str(wheel)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
      errors.append(f'{wheel.name}: {done.stderr.strip().splitlines()[-1:]}')
      log(f'could not install {wheel.name}: {done.stderr.strip()}')
    else:
      installed.append(wheel.name)
      log(f'installed {wheel.name} into {site}')
  if installed:
    use_site(site)
    failing = failing_imports(REQUIRED_MODULES)
  missing = [f'{m} ({e})' for m, e in failing.items() if m in REQUIRED_MODULES]
  if missing:
    raise RuntimeError(
        f'cannot import {", ".join(missing)}: install the requirements, or on a machine '
        f'without a package index run benchmarks/prepare_offline.sh where pip works and '
        f'carry its folder (looked in {wheels_dir})' + ''.join(f'; {e}' for e in errors))
  return installed
