"""The environments CI tests, each in a fresh virtualenv: `nox` runs all three (what
.ci/run does), `nox -s NAME` one, `nox -s NAME -- ARGS` passes ARGS to pytest.

  py311_lowest  Python 3.11, every requirement at its lower bound (uv's lowest-direct
                resolution): the whole suite but the device command's smoke (run by
                gpu_image). The README's test command.
  gpu_image     Python 3.12 as the GPU machine's image (benchmarks/gpu_image.txt: its
                versions, a CPU jaxlib in place of the CUDA plugin), plus the carried
                wheels (benchmarks/carried.txt) installed as the GPU run installs them:
                the quick tier's tests that need nothing the image lacks, and the
                device command (benchmarks/gpu_run.sh) at smoke scale.
  py313_latest  Python 3.13, the newest releases pip resolves: the quick tier
                (`pytest -m "not slow"`), every module but the slowest tests.

Needs nox and uv (`pip install nox uv`) and the three Pythons on PATH.
"""

import os
import re
import zipfile
from pathlib import Path

import nox

nox.options.default_venv_backend = 'uv'
nox.options.sessions = ['py311_lowest', 'gpu_image', 'py313_latest']
nox.options.reuse_venv = 'no'
nox.options.error_on_missing_interpreters = True
# uv, unlike pip, installs without bytecode; where PYTHONDONTWRITEBYTECODE is set, every
# test's main.py subprocess would then recompile jax, flax and the rest on import.
os.environ.setdefault('UV_COMPILE_BYTECODE', '1')

REPO = Path(__file__).parent
GPU_IMAGE = REPO / 'benchmarks' / 'gpu_image.txt'
CARRY = REPO / 'carry'
# The image lists flax without a version: the oldest a user may meet under its jax
# 0.11.2, which cannot `import flax.nnx`, so the carried flax must take over.
GPU_IMAGE_FLAX = 'flax==0.12.8'
QUICK = ('-m', 'not slow')
GPU_RUN_TEST = 'tests/benchmarks/test_gpu_run.py'


def _name(requirement: str) -> str:
  """'orbax-checkpoint>=0.11; python_version...' -> 'orbax-checkpoint' (normalised)."""
  return re.sub(r'[-_.]+', '-', re.match(r'\s*([A-Za-z0-9_.-]+)', requirement)[1]).lower()


def _lines(path: Path) -> list[str]:
  lines = (line.split('#', 1)[0].strip() for line in path.read_text().splitlines())
  return [line for line in lines if line]


def _requirement_names(path: Path) -> set[str]:
  names = set()
  for line in _lines(path):
    if line.startswith('-r'):
      names |= _requirement_names(path.parent / line[2:].strip())
    else:
      names.add(_name(line))
  return names


def _wheel_requirements(wheels: Path) -> set[str]:
  """What the carried wheels declare (Requires-Dist, extras left out)."""
  names = set()
  for wheel in wheels.glob('*.whl'):
    with zipfile.ZipFile(wheel) as archive:
      metadata = next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))
      for line in archive.read(metadata).decode().splitlines():
        if line.startswith('Requires-Dist:') and 'extra ==' not in line:
          names.add(_name(line.partition(':')[2]))
  return names


@nox.session(python='3.11')
def py311_lowest(session):
  session.install('--resolution=lowest-direct', '-r', 'requirements-dev.txt')
  # The device command's smoke runs in gpu_image, the environment it is for.
  session.run('python', '-m', 'pytest', '-q', f'--deselect={GPU_RUN_TEST}', *session.posargs)


@nox.session(python='3.12')
def gpu_image(session):
  """What the GPU run meets: the image, the carried wheels, nothing else."""
  image = {_name(line): line for line in _lines(GPU_IMAGE)}
  session.install(image['pip'])  # pip downloads the carried wheels and installs them
  session.run('bash', 'benchmarks/prepare_offline.sh', str(CARRY), external=True,
              env={'PYTHON': 'python', 'DATA': os.environ.get('DATA', str(
                  REPO.parent / 'shared' / 'data' / 'cifar10-jpeg-train.tar.xz'))})
  # The image's distributions that the project or a carried wheel uses, at its pins.
  wanted = (_requirement_names(REPO / 'requirements.txt') | _wheel_requirements(CARRY)
            | {'jaxlib', 'pytest', 'pytest-xdist'})
  session.install(*sorted(image[name] for name in wanted & set(image) if name != 'flax'),
                  GPU_IMAGE_FLAX)
  site = Path(session.create_tmp()).absolute() / 'site'
  session.run('python', '-c', 'import sys; from pathlib import Path; '
              'from benchmarks import offline; '
              'offline.ensure(Path(sys.argv[1]), Path(sys.argv[2]))', str(CARRY), str(site))
  env = {'PYTHONPATH': str(site)}
  # A test file that needs a distribution neither the image nor the carry has is
  # left out, named (conftest.py).
  session.run('python', '-m', 'pytest', '-q', '--skip-missing-imports', *QUICK,
              *session.posargs, env=env)
  # The device command at smoke scale, killed and resumed (it strips PYTHONPATH: the
  # GPU run installs the carried wheels itself).
  session.run('python', '-m', 'pytest', '-q', GPU_RUN_TEST, env=env)


@nox.session(python='3.13')
def py313_latest(session):
  session.install('--upgrade', '-r', 'requirements-dev.txt')
  session.run('python', '-m', 'pytest', '-q', *QUICK, *session.posargs)
