"""benchmarks/offline.py: wheels installed only where a distribution is missing or broken."""

import os
import sys
import zipfile

import pytest

from benchmarks import offline


def _wheel(directory, name='reproduce_offline_probe', version='1.0', body='VALUE = 42\n'):
  """A minimal pure-Python wheel, so that the install needs no index and no network."""
  path = directory / f'{name}-{version}-py3-none-any.whl'
  info = f'{name}-{version}.dist-info'
  with zipfile.ZipFile(path, 'w') as wheel:
    wheel.writestr(f'{name}.py', body)
    wheel.writestr(f'{info}/METADATA', f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    wheel.writestr(f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                   'Tag: py3-none-any\n')
    wheel.writestr(f'{info}/RECORD', '')
  return path


@pytest.fixture
def clean_path(monkeypatch):
  """No site folder of this environment's own, and only the probes a test sets."""
  monkeypatch.setattr(sys, 'path', list(sys.path))
  monkeypatch.setenv('PYTHONPATH', '')
  monkeypatch.setattr(offline, 'REQUIRED_MODULES', ())
  monkeypatch.setattr(offline, 'PROBES', {})
  yield
  for name in ('reproduce_offline_probe', 'reproduce_offline_broken'):
    sys.modules.pop(name, None)


def test_offline_installs_only_missing_wheels(tmp_path, clean_path):
  wheels = tmp_path / 'wheels'
  wheels.mkdir()
  probe = _wheel(wheels)
  jax_wheel = _wheel(wheels, name='jax', version='0.0.1')  # installed already: left alone
  site = tmp_path / 'site'
  logged = []
  assert offline.ensure(wheels, site, logged.append) == [probe.name]
  assert jax_wheel.name not in logged[0] and (site / 'reproduce_offline_probe.py').exists()
  assert os.environ['PYTHONPATH'] == str(site)
  import reproduce_offline_probe  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert reproduce_offline_probe.VALUE == 42
  assert offline.ensure(wheels, site, logged.append) == []  # found in site: nothing to do


@pytest.mark.slow
def test_an_installed_distribution_that_does_not_import_gets_the_carried_wheel(
    tmp_path, clean_path, monkeypatch):
  """As flax 0.12.8 under jax 0.11.2: installed, but `import flax.nnx` fails."""
  name = 'reproduce_offline_broken'
  monkeypatch.setitem(offline.PROBES, name.replace('_', '-'), name)
  old, new = tmp_path / 'old', tmp_path / 'new'
  old.mkdir()
  new.mkdir()
  site = tmp_path / 'site'
  _wheel(old, name=name, version='1.0', body='raise AttributeError("no HiPrimitive")\n')
  assert offline.ensure(old, site, print) == [f'{name}-1.0-py3-none-any.whl']
  assert offline.failing_imports([name]) == {name: 'AttributeError: no HiPrimitive'}
  fixed = _wheel(new, name=name, version='2.0')
  assert offline.ensure(new, site, print) == [fixed.name]  # installed, but broken
  assert offline.failing_imports([name]) == {}
  assert offline.ensure(new, site, print) == []  # now it imports: left alone


def test_offline_names_what_is_missing(tmp_path, monkeypatch):
  monkeypatch.setattr(offline, 'REQUIRED_MODULES', ('no_such_module_anywhere',))
  with pytest.raises(RuntimeError, match='no_such_module_anywhere.*prepare_offline.sh'):
    offline.ensure(tmp_path / 'none', tmp_path / 'site', print)
