"""Test setup: four CPU devices (to exercise data parallelism) and tiny configs."""

import os

# Must happen before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from squeezenet_jax import runtime  # pylint: disable=g-import-not-at-top

# The CPU settings main.py applies (docs/cpu.md), so that in-process tests run what
# main.py subprocesses run.
runtime.cpu_settings()

import atexit  # pylint: disable=g-import-not-at-top
import fcntl  # pylint: disable=g-import-not-at-top
import shutil  # pylint: disable=g-import-not-at-top
import tempfile  # pylint: disable=g-import-not-at-top
from pathlib import Path  # pylint: disable=g-import-not-at-top

import pytest  # pylint: disable=g-import-not-at-top

from configs import tiny as tiny_lib  # pylint: disable=g-import-not-at-top
from squeezenet_jax import config_utils  # pylint: disable=g-import-not-at-top

REPO_ROOT = Path(__file__).resolve().parents[1]


def _share_compiled_programs() -> None:
  """One persistent compilation cache for this test session, as main.py has per user.

  Most test files compile the same tiny programs (a train epoch, an eval step), in
  process and in main.py subprocesses; sharing them saves minutes on two cores. The
  first process to load this file (the xdist controller) makes the folder and removes
  it at exit; workers and subprocesses inherit it through the environment.
  """
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    folder = tempfile.mkdtemp(prefix='squeezenet_jax_tests_jit_')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


_share_compiled_programs()


def restored_params(workdir, config):
  """The `params` of a run's latest checkpoint (its `model` item alone), on the host."""
  import jax  # pylint: disable=g-import-not-at-top
  from squeezenet_jax import checkpoints, sharding  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  checkpointer = checkpoints.Checkpointer(Path(workdir) / 'checkpoints', read_only=True)
  _, variables, _ = trainer_lib.restore_model(config, checkpointer, sharding.make_mesh())
  return jax.device_get(variables['params'])


def tiny_config(**overrides):
  """configs/tiny.py (seconds on CPU) with `overrides` given as dotted names."""
  config = tiny_lib.get_config()
  for name, value in overrides.items():
    config_utils.set_field(config, name, value)
  return config


TINY_RUN_EPOCHS = 2  # two kept steps: a fallback and a latest
TINY_RUN_LOG = 'tiny_run.log'  # beside the workdir: what its training logged


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory) -> Path:
  """The workdir of `tiny_config(num_epochs=2)`'s run, trained once per test session.

  xdist workers share it: the first to ask trains it under a lock, the others wait and
  reuse it. Treat it as read-only: `copy_run` gives a test a copy of its own to change.
  `tiny_run_log` is what its training logged.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # shared by the workers of this session
  workdir = root / 'tiny_run'
  with open(root / 'tiny_run.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / 'results.json').exists():
      shutil.rmtree(workdir, ignore_errors=True)
      _train_logging_to(tiny_config(num_epochs=TINY_RUN_EPOCHS), workdir,
                        root / TINY_RUN_LOG)
  return workdir


def _train_logging_to(config, workdir: Path, log: Path) -> None:
  import logging  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.training import loop  # pylint: disable=g-import-not-at-top
  handler, root = logging.FileHandler(log), logging.getLogger()
  level = root.level
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  try:
    loop.train_and_evaluate(config, str(workdir))
  finally:
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


def tiny_run_log(workdir: Path) -> str:
  return (workdir.parent / TINY_RUN_LOG).read_text()


def copy_run(workdir: Path, target: Path) -> Path:
  """A copy of a finished run's workdir at `target` (which must not exist)."""
  shutil.copytree(workdir, target)
  return target


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
  """Keeps decoded-data and compilation caches out of the user's home."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path_factory.getbasetemp() / 'cache'))


def pytest_addoption(parser):
  parser.addoption(
      '--skip-missing-imports', action='store_true', default=False,
      help='Leave out, and name, each test file whose imports (through the project\'s '
           'modules) need a module this environment lacks: the gpu_image nox session.')


def _files_needing_missing_modules(config) -> dict[Path, list[str]]:
  """{test file: the modules it needs that do not import here}; the same in every
  xdist worker, so each leaves out the same files."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import import_graph  # pylint: disable=g-import-not-at-top
  left_out = {}
  for path in sorted((REPO_ROOT / 'tests').rglob('test_*.py')):
    missing = sorted(m for m in import_graph.third_party([path], at_import=True)
                     if importlib.util.find_spec(m) is None)
    if missing:
      left_out[path.resolve()] = missing
  return left_out


def pytest_configure(config):
  config.left_out = (_files_needing_missing_modules(config)
                     if config.getoption('--skip-missing-imports') else {})


def pytest_ignore_collect(collection_path, config):
  return True if Path(collection_path).resolve() in config.left_out else None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  del exitstatus
  for path, missing in config.left_out.items():
    terminalreporter.write_line(f'left out {path.relative_to(REPO_ROOT)}: needs '
                                f'{", ".join(missing)} (not in this environment)')
