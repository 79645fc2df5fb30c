"""The command line: one `error:` line and exit status 2 for bad input."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, tiny_config

TINY = ['--config=configs/tiny.py']


def run_main(*args, env=None, timeout=300):
  """Runs main.py in a fresh process (its own device count and signal handlers)."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})}
  return subprocess.run([sys.executable, 'main.py', *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def error_line(result) -> str:
  lines = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
  assert len(lines) == 1, result.stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize('args, message', [
    (['--config.model.name=vgg'], "model.name='vgg' is not allowed: it must be one of squeezenet"),
    (['--config.model.version=2.0'], "model.version='2.0' is not allowed"),
    (['--config.data.source=folder', '--config.data.path=/nonexistent/cifar.tar.xz'],
     'does not exist'),
    (['--config.data.source=imagenet'], 'data.source'),
    (['--config.batch_size=30'], 'multiple of the device count'),
    (['--config.num_epochs=-1'], 'num_epochs=-1 is not allowed: it must be an integer >= 1'),
    (['--config.learning_rate=-1'], 'learning_rate=-1.0 is not allowed'),
    (['--config.batch_size=0'], 'batch_size=0 is not allowed'),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, message):
  result = run_main(*TINY, f'--workdir={tmp_path / "w"}', *args,
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in error_line(result)
  assert not (tmp_path / 'w' / 'config.json').exists()  # a failed start claims nothing


def test_unknown_config_field_is_refused(tmp_path):
  result = run_main(*TINY, f'--workdir={tmp_path}', '--config.model.bypas=simple')
  assert result.returncode == 2
  assert error_line(result) == ('error: --config.model.bypas: the config has no field bypas '
                                '(did you mean bypass?); --print_config lists them')
  assert not (tmp_path / 'config.json').exists()
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  result = run_main('--mode=eval', f'--workdir={tmp_path}', '--config.data.pth=x')
  assert result.returncode == 2 and 'pth' in error_line(result)
  result = run_main('--mode=eval', f'--workdir={tmp_path}', *TINY)
  assert result.returncode == 2 and 'leave out --config' in error_line(result)


def test_positional_arguments_are_image_paths_for_predict_only(tmp_path):
  result = run_main(*TINY, f'--workdir={tmp_path}', 'stray.png')
  assert result.returncode == 2 and 'unexpected arguments: stray.png' in error_line(result)
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  result = run_main('--mode=predict', f'--workdir={tmp_path}')
  assert result.returncode == 2 and 'needs image files' in error_line(result)


@pytest.mark.parametrize('args, message', [
    (['--config.num_epochs=abc'],
     "error: flag --config.num_epochs=abc: invalid literal for int() with base 10: 'abc'; "
     '--helpshort lists the flags'),
    (['--top_k=many'], 'flag --top_k=many: invalid literal for int()'),
    (['--mode=trian'], 'flag --mode=trian: value should be one of <train|eval'),
    (['--bogus'], "error: unknown command line flag 'bogus'; --helpshort lists the flags"),
])
def test_a_bad_flag_is_one_error_line_and_exit_2(tmp_path, args, message):
  result = run_main(*TINY, f'--workdir={tmp_path / "w"}', *args)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in error_line(result)
  assert 'FATAL' not in result.stderr and not (tmp_path / 'w').exists()


@pytest.mark.parametrize('text, message', [
    (None, 'no such file'),
    ('def get_config(:\n', 'cannot be loaded (SyntaxError, line 1: invalid syntax): fix the file'),
    ('X = 1\n', 'has no get_config() function'),
    ('def get_config():\n  return 3\n', 'get_config() returned int, not an ml_collections'),
    ('def get_config():\n  raise ValueError("no such variant")\n',
     'cannot be loaded (ValueError: no such variant): fix the file'),
])
def test_a_config_file_that_gives_no_config_is_one_error_line(tmp_path, text, message):
  path = tmp_path / 'my_config.py'
  if text is not None:
    path.write_text(text)
  result = run_main(f'--config={path}', f'--workdir={tmp_path / "w"}')
  assert result.returncode == 2, result.stderr[-2000:]
  line = error_line(result)
  assert line.startswith(f'error: --config={path}') and message in line, line
  assert 'Traceback' not in result.stderr and not (tmp_path / 'w').exists()
  if text is None:  # the shipped configs are named, to pick from
    assert 'configs/default.py' in line and 'configs/squeezenet_best.py' in line


def test_a_config_file_argument_reaches_get_config(tmp_path):
  result = run_main('--config=configs/tiny.py:extra', f'--workdir={tmp_path}')
  assert result.returncode == 2 and 'get_config() takes 0 positional' in error_line(result)
  result = run_main('--mode=sweep', '--config=configs/sweeps/recipe.py:r1', '--print_config',
                    f'--workdir={tmp_path}')
  assert result.returncode == 0 and json.loads(result.stdout)['model']['name'] == 'squeezenet'


@pytest.mark.slow
def test_train_then_eval_and_summary_through_main(tmp_path):
  workdir = str(tmp_path / 'run')
  assert run_main(*TINY, f'--workdir={workdir}').returncode == 0
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert results['params'] == results['analytic_params']
  # eval and export take --config.data.* / --config.export.* over the run's own config.json.
  eval_result = run_main('--mode=eval', f'--workdir={workdir}',
                         '--config.data.eval_split=validation')
  assert eval_result.returncode == 0, eval_result.stderr[-2000:]
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert 'val_accuracy' in results and 'train_seconds' in results
  # Quiet by default: no third-party warnings (orbax read-only restores, optax schedules).
  assert not [l for l in eval_result.stderr.splitlines() if not l.startswith('I')], (
      eval_result.stderr[-2000:])
  export_result = run_main('--mode=export', f'--workdir={workdir}', '--config.export.bits=4',
                           '--config.data.eval_split=validation')
  assert export_result.returncode == 0, export_result.stderr[-2000:]
  assert json.loads((tmp_path / 'run' / 'sizes.json').read_text())['export']['bits'] == 4
  refused = run_main('--mode=eval', f'--workdir={workdir}', '--config.model.name=alexnet')
  assert refused.returncode == 2 and '--config.model.name cannot change' in error_line(refused)
  missing = run_main('--mode=eval', f'--workdir={tmp_path / "none"}',
                     '--config.data.eval_split=validation')
  assert missing.returncode == 2 and 'config.json not found' in error_line(missing)
  # Another config in the same workdir is refused and nothing is touched.
  before = (tmp_path / 'run' / 'results.json').read_text()
  refused = run_main(*TINY, f'--workdir={workdir}', '--config.learning_rate=0.5')
  assert refused.returncode == 2 and 'another config' in error_line(refused)
  assert (tmp_path / 'run' / 'results.json').read_text() == before


@pytest.mark.parametrize('flag', ['--help', '--helpfull', '-h'])
def test_help_exits_0_and_says_how_to_list_the_config_fields(flag):
  result = run_main(flag)
  assert result.returncode == 0, result.stderr[-2000:]
  assert '--print_config' in result.stdout and '--workdir' in result.stdout


def test_print_config_shows_every_field_with_the_overrides_and_needs_no_workdir():
  result = run_main(*TINY, '--print_config', '--config.model.bypass=simple')
  assert result.returncode == 0, result.stderr[-2000:]
  printed = json.loads(result.stdout)
  assert printed['model']['bypass'] == 'simple' and 'split_seed' in printed['data']


def test_a_runs_config_with_a_home_relative_workdir_and_an_eval_batch_size(tmp_path):
  """`--workdir=~/w` is the user's home (bash leaves a `~` after `=`), and
  eval_batch_size may be overridden on a trained run (for another device count)."""
  (tmp_path / 'w').mkdir()
  (tmp_path / 'w' / 'config.json').write_text(tiny_config().to_json())
  result = run_main('--mode=eval', '--workdir=~/w', '--config.eval_batch_size=24',
                    '--print_config', env={'HOME': str(tmp_path)})
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout)['eval_batch_size'] == 24
  assert not (REPO_ROOT / '~').exists()


def test_a_missing_workdir_is_one_error_line():
  result = run_main(*TINY)
  assert result.returncode == 2 and '--workdir is required' in error_line(result)
