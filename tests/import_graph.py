"""Which third-party modules a file needs, read from its imports (ast) and those of the
project modules it imports, transitively: for the carried-wheels check
(benchmarks/test_carried.py) and for conftest's --skip-missing-imports."""

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where the project's own modules live: the repository root, and tests/ and its
# folders for helpers (pytest puts a test file's folder on sys.path).
ROOTS = (REPO, REPO / 'tests', *sorted(p for p in (REPO / 'tests').rglob('*')
                                       if p.is_dir() and p.name != '__pycache__'))


def module_file(name: str) -> Path | None:
  """The project file of a dotted module name, or None for a third-party one."""
  parts = name.split('.')
  for root in ROOTS:
    for candidate in (root.joinpath(*parts).with_suffix('.py'),
                      root.joinpath(*parts, '__init__.py')):
      if candidate.is_file():
        return candidate
  return None


class _Imports(ast.NodeVisitor):
  """Dotted names imported by a module; with `at_import`, only those run on import
  (none inside a function's body)."""

  def __init__(self, package: str, at_import: bool):
    self.package = package
    self.at_import = at_import
    self.names: list[str] = []

  def visit_Import(self, node):  # pylint: disable=invalid-name
    self.names += [alias.name for alias in node.names]

  def visit_ImportFrom(self, node):  # pylint: disable=invalid-name
    base = node.module or ''
    if node.level:  # relative: from the file's package
      parts = self.package.split('.') if self.package else []
      parent = parts[:len(parts) - node.level + 1]
      base = '.'.join([*parent, base] if base else parent)
    self.names.append(base)
    self.names += [f'{base}.{alias.name}' for alias in node.names]  # may be submodules

  def _function(self, node):
    if not self.at_import:
      self.generic_visit(node)

  visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function  # noqa: N815


def _package(path: Path) -> str:
  """The package a file's relative imports start from."""
  root = max((r for r in ROOTS if path.is_relative_to(r)), key=lambda r: len(r.parts))
  return '.'.join(path.relative_to(root).parts[:-1])


def third_party(files, at_import: bool) -> dict[str, set[Path]]:
  """{top-level third-party module: the project files importing it} for `files` and
  every project module they import; `at_import`: only imports run when importing."""
  needed: dict[str, set[Path]] = {}
  todo, seen = [Path(f).resolve() for f in files], set()
  while todo:
    path = todo.pop()
    if path in seen:
      continue
    seen.add(path)
    visitor = _Imports(_package(path), at_import)
    visitor.visit(ast.parse(path.read_text(), str(path)))
    for name in visitor.names:
      top = name.split('.')[0]
      local = module_file(name)
      if local is not None:
        todo.append(local.resolve())
        # A package's __init__ runs before its submodule.
        for depth in range(1, name.count('.') + 1):
          parent = module_file('.'.join(name.split('.')[:depth]))
          if parent is not None:
            todo.append(parent.resolve())
      elif top and top not in sys.stdlib_module_names and module_file(top) is None:
        needed.setdefault(top, set()).add(path)
  return needed
