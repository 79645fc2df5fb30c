"""The layers: configs on top, then entry points (main.py, modes), then the library."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

CONFIGS = sorted(str(p.relative_to(REPO_ROOT).with_suffix('')).replace('/', '.')
                 for p in (REPO_ROOT / 'configs').rglob('*.py') if p.name != '__init__.py')
HEAVY = ('matplotlib', 'optax', 'jax', 'squeezenet_jax.training', 'squeezenet_jax.modes')


def _imports(path) -> set[str]:
  tree = ast.parse(path.read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return names


@pytest.mark.parametrize('module', CONFIGS)
def test_a_config_loads_without_the_trainer_or_plotting(module):
  # configs/run.py takes the workdir of a run: a missing one gives the defaults.
  args = "'/nonexistent'" if module == 'configs.run' else ''
  code = (f'import sys, {module} as m; m.get_config({args})\n'
          f'heavy = [n for n in {HEAVY!r} if n in sys.modules]\n'
          'assert not heavy, heavy')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]


def test_the_library_imports_no_config_and_no_mode():
  library = [p for p in (REPO_ROOT / 'squeezenet_jax').rglob('*.py') if 'modes' not in p.parts]
  for path in library:
    bad = [n for n in _imports(path) if n.split('.')[0] == 'configs'
           or n.startswith('squeezenet_jax.modes')]
    assert not bad, f'{path.relative_to(REPO_ROOT)} imports {bad}'


def test_configs_import_only_ml_collections_configs_and_config_utils():
  allowed = ('ml_collections', 'configs', 'squeezenet_jax.config_utils', 'json', 'os')
  for path in (REPO_ROOT / 'configs').rglob('*.py'):
    bad = [n for n in _imports(path) if not n.startswith(allowed)]
    assert not bad, f'{path.relative_to(REPO_ROOT)} imports {bad}'
