"""The workdir: one writer (an OS lock that kill -9 releases), one config, merged results."""

import json
import signal
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, tiny_config
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
  with workdir_lib.locked(tmp_path, 'train'):
    with pytest.raises(UserError, match=r'in use by pid \d+ on .* \(train, since'):
      with workdir_lib.locked(tmp_path, 'eval'):
        pass
  with workdir_lib.locked(tmp_path, 'eval'):  # released at the end of the block
    pass


def test_kill_9_releases_the_lock(tmp_path):
  code = ('import sys, time; from squeezenet_jax import workdir as w\n'
          f'with w.locked({str(tmp_path)!r}, "test"):\n'
          '  print("locked", flush=True); time.sleep(600)')
  holder = subprocess.Popen([sys.executable, '-c', code], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(UserError, match=f'in use by pid {holder.pid}'):
    with workdir_lib.locked(tmp_path, 'train'):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lib.locked(tmp_path, 'train'):  # no stale lock
    pass


def test_a_workdir_without_progress_takes_another_config(tmp_path):
  workdir_lib.claim(str(tmp_path), tiny_config(), False)
  workdir_lib.claim(str(tmp_path), tiny_config(learning_rate=0.3), False)  # nothing to keep
  assert json.loads((tmp_path / 'config.json').read_text())['learning_rate'] == 0.3
  (tmp_path / 'results.json').write_text('{}')
  with pytest.raises(UserError, match='another config .*learning_rate'):
    workdir_lib.claim(str(tmp_path), tiny_config(), False)


def test_a_run_written_before_a_field_existed_loads_and_resumes_with_its_value(tmp_path):
  saved = json.loads(tiny_config().to_json())
  del saved['ema_decay'], saved['model']['stem_pool']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  (tmp_path / 'results.json').write_text('{}')  # progress: a changed config is refused
  config = workdir_lib.load_config(str(tmp_path))
  assert (config.ema_decay, config.model.stem_pool) == (0.0, True)
  assert not workdir_lib.check_claim(str(tmp_path), tiny_config(), False)
  with pytest.raises(UserError, match='another config .*ema_decay'):
    workdir_lib.check_claim(str(tmp_path), tiny_config(ema_decay=0.9), False)


def test_merge_json_keeps_other_keys(tmp_path):
  path = tmp_path / 'results.json'
  workdir_lib.merge_json(path, {'test_accuracy': 0.5, 'val_accuracy': 0.4})
  assert workdir_lib.merge_json(path, {'val_accuracy': 0.6}) == {
      'test_accuracy': 0.5, 'val_accuracy': 0.6}
