"""The layers: configs on top, then entry points (main.py, modes), then the library."""

import ast
import re
import subprocess
import sys
from pathlib import Path

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
  code = (f'import sys, {module} as m; m.get_config()\n'
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


CODE_MAP = REPO_ROOT / 'docs' / 'code-map.md'
PACKAGE = REPO_ROOT / 'squeezenet_jax'


def _code_map_layers() -> dict[str, int]:
  """Module path (squeezenet_jax/...py) -> its layer's rank in docs/code-map.md (0: top)."""
  layers, ranks = [], {}
  for line in CODE_MAP.read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if not line.startswith('| ') or len(cells) != 3 or cells[0] == 'layer':
      continue
    if cells[0]:
      layers.append(cells[0])
    first, *more = re.findall(r'`([^`]+\.py)`', cells[1])
    for name in (first, *(str(Path(first).parent / m) for m in more)):
      if name.startswith('squeezenet_jax/'):
        ranks[name] = len(layers) - 1
  return ranks


def _package_imports(path: Path) -> set[str]:
  """The package modules `path` imports, as paths relative to the repository."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
    for name in names:
      if not name.startswith('squeezenet_jax.'):
        continue
      for candidate in (name.replace('.', '/') + '.py', name.replace('.', '/') + '/__init__.py'):
        if (REPO_ROOT / candidate).exists():
          found.add(candidate)
          break
  return found


def test_the_code_map_lists_every_module_once():
  modules = {str(p.relative_to(REPO_ROOT)) for p in PACKAGE.rglob('*.py')
             if p.name != '__init__.py' or p.parent.name == 'sweep_launchers'}
  assert set(_code_map_layers()) == modules


def test_a_module_imports_only_from_its_layer_or_the_layers_below():
  ranks = _code_map_layers()
  for module, rank in ranks.items():
    upward = [f'{name} ({ranks[name]})' for name in _package_imports(REPO_ROOT / module)
              if name in ranks and ranks[name] < rank]
    assert not upward, f'{module} (layer {rank}) imports from above: {upward}'
