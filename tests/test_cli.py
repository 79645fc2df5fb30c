"""Flag parsing shared by main.py and the benchmarks (the subprocess checks are in
test_main.py and benchmarks/test_benchmark.py)."""

from squeezenet_jax import cli
from squeezenet_jax import config_utils


def test_every_config_file_argument_is_found():
  argv = ['main.py', '--config=a.py', '--workdir=w', '--config', 'b.py:r1', '--', '--config=c']
  assert cli.config_file_arguments(argv) == ['a.py', 'b.py:r1']
  assert cli.config_file_arguments(['main.py', '--config']) == ['']
  assert cli.config_file_arguments(['main.py', '--config.num_epochs=3']) == []


def test_a_config_file_problem_names_the_file_and_the_fix(tmp_path):
  assert config_utils.config_file_problem('configs/tiny.py') is None
  assert config_utils.config_file_problem('configs/sweeps/recipe.py:r1') is None
  assert 'configs/default.py' in config_utils.config_file_problem(str(tmp_path / 'none.py'))
  assert config_utils.config_file_problem(':r1') == (
      '--config needs a config file, e.g. --config=configs/default.py')
  folder = tmp_path / 'folder.py'
  folder.mkdir()
  assert f'{folder} is a folder, not a config file' in config_utils.config_file_problem(
      str(folder))
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config():\n  return {}.missing\n')
  assert config_utils.config_file_problem(str(bad)) == (
      f"--config={bad} cannot be loaded (AttributeError: 'dict' object has no attribute "
      "'missing'): fix the file")
