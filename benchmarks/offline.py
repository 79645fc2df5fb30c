"""Offline installs from a folder of wheels (benchmarks/prepare_offline.sh), stdlib only.

A GPU machine without a package index gets what its image lacks as wheels carried
with the checkout. Only distributions that are not installed are installed, with
`pip install --no-index --no-deps --target SITE`, so nothing the image has (jax,
numpy, torch) is replaced; SITE then goes first on sys.path and into PYTHONPATH for
subprocesses. Nothing here imports the package: it runs before any of it can.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

# Modules the project cannot start without; checked after any install.
REQUIRED_MODULES = ('absl', 'ml_collections', 'jax', 'flax', 'optax', 'orbax.checkpoint',
                    'numpy', 'PIL', 'matplotlib')


def wheel_distribution(path: Path) -> str:
  """The distribution a wheel file installs (`ml_collections-1.1.0-py3-none-any.whl`)."""
  return path.name.split('-', 1)[0]


def is_installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)  # names are normalised (-, _, case)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def missing_wheels(wheels_dir: Path) -> list[Path]:
  """The folder's wheels whose distribution is not installed (one per distribution)."""
  wheels = {}
  for path in sorted(Path(wheels_dir).glob('*.whl')):
    name = re.sub(r'[-_.]+', '-', wheel_distribution(path)).lower()
    wheels.setdefault(name, path)
  return [path for name, path in wheels.items() if not is_installed(name)]


def use_site(site: Path) -> None:
  """Puts SITE first for this process and for its subprocesses."""
  site = str(Path(site).absolute())
  if site not in sys.path:
    sys.path.insert(0, site)
  importlib.invalidate_caches()
  paths = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
  if site not in paths:
    os.environ['PYTHONPATH'] = os.pathsep.join([site, *paths])


def missing_modules() -> list[str]:
  import importlib.util  # pylint: disable=g-import-not-at-top
  missing = []
  for module in REQUIRED_MODULES:
    try:
      if importlib.util.find_spec(module) is None:
        missing.append(module)
    except ModuleNotFoundError:  # the parent package is missing
      missing.append(module)
  return missing


def ensure(wheels_dir: Path, site: Path, log: Callable[[str], None] = print) -> list[str]:
  """Installs the folder's wheels that are missing into SITE; returns the files installed.

  One pip call per wheel, so that one that does not fit this Python (say a cp312 wheel
  under 3.11) is logged and skipped; RuntimeError if a required module is still missing.
  """
  if Path(site).is_dir():  # installed by an earlier run
    use_site(site)
  wheels = missing_wheels(wheels_dir) if Path(wheels_dir).is_dir() else []
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
  missing = missing_modules()
  if missing:
    raise RuntimeError(
        f'cannot import {", ".join(missing)}: install the requirements, or on a machine '
        f'without a package index run benchmarks/prepare_offline.sh where pip works and '
        f'carry its folder (looked in {wheels_dir})' + ''.join(f'; {e}' for e in errors))
  return installed
