"""A trained run's config: built once from config.json, typed and bounded overrides."""

import pytest

from conftest import tiny_config
from squeezenet_jax import trained_run
from squeezenet_jax.errors import UserError


@pytest.fixture
def workdir(tmp_path):
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  return str(tmp_path)


def test_arguments_are_typed_by_the_runs_own_fields(workdir):
  overrides, rest = trained_run.parse_args(workdir, [
      '--config.data.limit=3', 'cat.jpg', '--config.data.path', '/x.tar', '--config.eval_tta=false',
      '--config.data.mean=(0.5, 0.5, 0.5)', 'dog.png'])
  assert overrides == {'data.limit': 3, 'data.path': '/x.tar', 'eval_tta': False,
                       'data.mean': (0.5, 0.5, 0.5)}
  assert rest == ['cat.jpg', 'dog.png']


@pytest.mark.parametrize('arg, message', [
    ('--config.data.pth=/x', 'pth'),
    ('--config.data.limit=many', 'data.limit=many'),
])
def test_a_bad_argument_is_one_user_error(workdir, arg, message):
  with pytest.raises(UserError, match=message):
    trained_run.parse_args(workdir, [arg])


def test_a_mode_changes_only_its_own_groups(workdir):
  config = trained_run.config_for(workdir, 'export', {'export.bits': 4, 'eval_batch_size': 32})
  assert (config.export.bits, config.eval_batch_size) == (4, 32)
  with pytest.raises(UserError, match='--config.export.bits cannot change them'):
    trained_run.config_for(workdir, 'eval', {'export.bits': 4})
  with pytest.raises(UserError, match='--config.learning_rate cannot change them'):
    trained_run.config_for(workdir, 'compress', {'learning_rate': 0.5})


def test_overrides_are_validated(workdir):
  with pytest.raises(UserError, match='export.bits=9 is not allowed'):
    trained_run.config_for(workdir, 'export', {'export.bits': 9})


def test_a_data_path_on_a_synthetic_run_means_a_folder(workdir):
  config = trained_run.config_for(workdir, 'eval', {'data.path': '/data.tar'})
  assert (config.data.source, config.data.path) == ('folder', '/data.tar')


def test_a_config_json_of_another_version_is_refused(tmp_path):
  saved = tiny_config()
  del saved['compress']
  (tmp_path / 'config.json').write_text(saved.to_json())
  with pytest.raises(UserError, match='lacks compress.stages'):
    trained_run.config_for(str(tmp_path), 'eval', {})
