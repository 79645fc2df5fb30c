"""docs/interface.md's names are the code's: every flag it lists is one main.py defines,
every config field one configs/default.py has, every mode one main.py runs (and the
same for the project's fixed interface file where a checkout has it beside it)."""

import ast
import re

import pytest

from conftest import REPO_ROOT
from configs import default

DOCS = REPO_ROOT / 'docs' / 'interface.md'
FIXED = REPO_ROOT.parent / 'shared' / 'INTERFACE.md'  # absent outside this project's checkout
ABSL_FLAGS = {'help', 'verbosity'}  # absl's own, documented beside main.py's
TABLE_CELL = re.compile(r'^\| (.+?) \|', re.M)
MAIN = ast.parse((REPO_ROOT / 'main.py').read_text())


def _main_flags() -> set[str]:
  """Names of the flags main.py defines (absl `DEFINE_*` and config_flags)."""
  return {node.args[0].value for node in ast.walk(MAIN)
          if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr.startswith('DEFINE') and node.args
          and isinstance(node.args[0], ast.Constant)}


def _main_modes() -> tuple[str, ...]:
  for node in MAIN.body:
    if isinstance(node, ast.Assign) and node.targets[0].id == 'MODES':
      return ast.literal_eval(node.value)
  raise AssertionError('main.py defines no MODES')


def _section(text: str, heading: str) -> str:
  """The text under a `## heading` line (the heading in backticks or not), to the next."""
  match = re.search(rf'^## `?{re.escape(heading)}`?\n', text, re.M)
  assert match, f'no "## {heading}" heading'
  return text[match.end():].split('\n## ', 1)[0]


def _documented_flags(text: str) -> set[str]:
  return set(re.findall(r'`--([a-z_]+)', _section(text, 'main.py')))


def _documented_fields(text: str) -> set[str]:
  """Fields in the Config fields table's first column, e.g. `augment.crop_padding`."""
  fields = set()
  for cell in TABLE_CELL.findall(_section(text, 'Config fields')):
    fields.update(name for name in re.findall(r'`([a-z0-9_.<>*]+)`', cell)
                  if '<' not in name and name != 'field')
  return fields


def _documents() -> list:
  documents = [pytest.param(DOCS.read_text(), id='docs/interface.md')]
  if FIXED.is_file():
    documents.append(pytest.param(FIXED.read_text(), id='INTERFACE.md'))
  return documents


def _has_field(config, dotted: str) -> bool:
  for part in dotted.split('.'):
    if part not in config:
      return False
    config = config[part]
  return True


def test_the_documents_are_parsed():
  """The parsers find the tables (a changed heading would otherwise pass vacuously)."""
  text = DOCS.read_text()
  assert {'config', 'workdir', 'mode', 'format', 'sweep_workers'} <= _documented_flags(text)
  assert {'model.stem_pool', 'data.path', 'compress.stages'} <= _documented_fields(text)


@pytest.mark.parametrize('text', _documents())
def test_every_documented_flag_is_defined(text):
  missing = _documented_flags(text) - _main_flags() - ABSL_FLAGS
  assert not missing, f'flags documented but not defined in main.py: {sorted(missing)}'


@pytest.mark.parametrize('text', _documents())
def test_every_documented_config_field_exists(text):
  config = default.get_config()
  missing = sorted(f for f in _documented_fields(text) if not _has_field(config, f))
  assert not missing, f'fields documented but not in configs/default.py: {missing}'


@pytest.mark.parametrize('text', _documents())
def test_every_documented_mode_runs(text):
  line = next(line for line in text.splitlines() if '`--mode`' in line)
  documented = set(re.findall(r'`([a-z]+)`', line.split('`--mode`', 1)[1]))
  assert documented == set(_main_modes())


def test_every_flag_main_defines_is_documented():
  undocumented = _main_flags() - _documented_flags(DOCS.read_text())
  assert not undocumented, f'main.py flags missing from docs/interface.md: {sorted(undocumented)}'
