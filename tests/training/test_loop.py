"""Trainer: learning, data-parallel equivalence, scanned vs per-step, resume, eval."""

import json
import signal
import threading

import jax
import numpy as np
import pytest

from conftest import copy_run, restored_params, tiny_config, tiny_run_log
from squeezenet_jax import checkpoints
from squeezenet_jax import trained_run
from squeezenet_jax import sharding
from squeezenet_jax.data import dataset as data_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import evaluate
from squeezenet_jax.training import loop
from squeezenet_jax.training import trainer as trainer_lib


def _params_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def _run_epoch(config, mesh):
  exp = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')), mesh=mesh)
  images, labels = exp.device_train_data()
  epoch_fn, _ = exp.compile_epoch(images, labels)
  state, metrics = epoch_fn(exp.state, images, labels)
  return state, jax.device_get(metrics)


@pytest.mark.slow
def test_synthetic_run_learns_well_above_chance(tmp_path):
  config = tiny_config(num_epochs=4, profile_epoch=2, **{'data.synthetic_train_size': 1024})
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert list((tmp_path / 'profile').rglob('*.xplane.pb'))  # the jax.profiler trace
  assert results['val_accuracy'] > 0.5  # chance is 0.1
  assert results['params'] == results['analytic_params']
  assert results['checkpoint_bytes'] > 0
  events = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [e['epoch'] for e in events] == [1, 2, 3, 4]
  assert events[-1]['val_accuracy'] == results['val_accuracy']
  assert {'step', 'train_loss', 'images_per_second', 'grad_norm', 'update_norm',
          'param_norm'} <= events[0].keys()
  assert all(e['grad_norm'] > 0 and e['update_norm'] > 0 and e['param_norm'] > 0
             for e in events)
  assert json.loads((tmp_path / 'results.json').read_text()) == results


@pytest.mark.slow
def test_four_devices_match_one_device_for_the_same_global_batch():
  assert jax.device_count() == 4
  # Two steps of 32 at full learning rate; float reductions differ in order only.
  config = tiny_config(warmup_epochs=0.0, **{'data.synthetic_train_size': 64 + 128})
  state1, m1 = _run_epoch(config, sharding.make_mesh(jax.devices()[:1]))
  state4, m4 = _run_epoch(config, sharding.make_mesh())
  assert int(state1.step) == int(state4.step) == 2
  np.testing.assert_allclose(m1['train_loss'], m4['train_loss'], rtol=1e-5)
  np.testing.assert_allclose(m1['train_accuracy'], m4['train_accuracy'])
  _params_close(state1.params, state4.params, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_scanned_epoch_equals_per_step_loop():
  config = tiny_config(**{'data.synthetic_train_size': 128 + 128})
  mesh = sharding.make_mesh(jax.devices()[:1])
  config.epoch_loop = 'scan'
  scanned, scanned_metrics = _run_epoch(config, mesh)
  config.epoch_loop = 'python'
  stepped, stepped_metrics = _run_epoch(config, mesh)
  assert int(stepped.step) == int(scanned.step) == 4
  np.testing.assert_allclose(scanned_metrics['train_loss'], stepped_metrics['train_loss'],
                             rtol=1e-5)
  _params_close(stepped.params, scanned.params, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_alternating_flip_scanned_epoch_equals_per_step_loop_and_changes_training():
  config = tiny_config(**{'data.synthetic_train_size': 64 + 128, 'augment.alternating_flip':
                          True, 'augment.crop_padding': 0})
  mesh = sharding.make_mesh(jax.devices()[:1])
  config.epoch_loop = 'scan'
  scanned, _ = _run_epoch(config, mesh)
  config.epoch_loop = 'python'
  stepped, _ = _run_epoch(config, mesh)
  _params_close(stepped.params, scanned.params, rtol=1e-3, atol=1e-4)
  config.augment.alternating_flip = False
  random_flips, _ = _run_epoch(config, mesh)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(random_flips.params),
                                                   jax.tree.leaves(stepped.params)))


@pytest.mark.slow
def test_rerun_resumes_at_the_right_step_with_the_same_state(tmp_path):
  full_dir, split_dir = tmp_path / 'full', tmp_path / 'split'
  full = loop.train_and_evaluate(tiny_config(num_epochs=2), str(full_dir))
  loop.train_and_evaluate(tiny_config(num_epochs=2), str(split_dir))
  # Roll the second run back to its first epoch's checkpoint, then rerun: it resumes.
  ckpt = checkpoints.Checkpointer(split_dir / 'checkpoints')
  steps = ckpt.all_steps()
  assert len(steps) == 2
  import shutil
  shutil.rmtree(split_dir / 'checkpoints' / str(steps[-1]))
  resumed = loop.train_and_evaluate(tiny_config(num_epochs=2), str(split_dir))
  assert resumed['steps'] == full['steps']
  assert resumed['val_accuracy'] == full['val_accuracy']
  _params_close(restored_params(full_dir, tiny_config(num_epochs=2)),
                restored_params(split_dir, tiny_config(num_epochs=2)), rtol=0, atol=0)


@pytest.mark.parametrize('when', ['wait', 'results'])
def test_a_signal_after_the_last_epoch_waits_for_the_finished_run(tmp_path, monkeypatch, when):
  """SIGTERM while the last checkpoint commits or results are written: the run finishes.

  Unarmed then, the signal would kill the process with the last save uncommitted and
  no results.json, though metrics.jsonl already logged the last epoch.
  """
  if threading.current_thread() is not threading.main_thread():
    pytest.skip('signal handlers need the main thread')
  raised, before = [], signal.getsignal(signal.SIGTERM)

  def signal_then(original):
    def wrapped(*args, **kwargs):
      if not raised:
        raised.append(True)
        signal.raise_signal(signal.SIGTERM)
      return original(*args, **kwargs)
    return wrapped

  if when == 'wait':
    monkeypatch.setattr(checkpoints.Checkpointer, 'wait',
                        signal_then(checkpoints.Checkpointer.wait))
  else:
    monkeypatch.setattr(loop, '_results', signal_then(loop._results))
  results = loop.train_and_evaluate(tiny_config(num_epochs=1), str(tmp_path))
  assert raised
  assert json.loads((tmp_path / 'results.json').read_text())['steps'] == results['steps']
  assert checkpoints.Checkpointer(tmp_path / 'checkpoints').latest_step() == results['steps']
  assert signal.getsignal(signal.SIGTERM) is before  # disarmed afterwards


def test_eval_mode_scores_the_checkpoint(tmp_path, tiny_run):
  trained = json.loads((tiny_run / 'results.json').read_text())
  log = tiny_run_log(tiny_run)
  assert f'Trained 2 epochs (24 steps): val_accuracy {trained["val_accuracy"]:.4f}' in log
  assert f'results in {tiny_run}/results.json' in log
  workdir = copy_run(tiny_run, tmp_path / 'run')
  results = evaluate.run(str(workdir), trained_run.config_for(str(workdir), 'eval', {'data.eval_split': 'validation'}))
  assert results['val_accuracy'] == pytest.approx(trained['val_accuracy'])
  results = evaluate.run(str(workdir), trained_run.config_for(str(workdir), 'eval', {}))  # synthetic has a test split: the default
  assert 0.0 <= results['test_accuracy'] <= 1.0


@pytest.mark.parametrize('overrides, message', [
    ({'batch_size': 30}, 'multiple of the device count'),
    ({'batch_size': 4096}, 'exceeds'),
    ({'optimizer': 'rmsprop'}, "optimizer='rmsprop' is not allowed: it must be one of sgd, adamw"),
    ({'dtype': 'float16'}, "dtype='float16' is not allowed"),
])
def test_bad_config_is_a_user_error(tmp_path, overrides, message):
  with pytest.raises(UserError, match=message):
    loop.train_and_evaluate(tiny_config(**overrides), str(tmp_path))


def test_workdir_of_another_config_is_refused(tmp_path, tiny_run):
  workdir = copy_run(tiny_run, tmp_path / 'run')
  before = (workdir / 'results.json').read_text()
  with pytest.raises(UserError, match='another config'):
    loop.train_and_evaluate(tiny_config(learning_rate=0.3), str(workdir))
  assert (workdir / 'results.json').read_text() == before


def test_labels_outside_the_model_classes_are_refused(monkeypatch):
  real = data_lib.load_dataset

  def with_a_bad_label(data_config, splits):
    dataset = real(data_config, splits)
    dataset.splits['train'].labels[0] = 10  # ten classes: 0..9
    return dataset

  monkeypatch.setattr(data_lib, 'load_dataset', with_a_bad_label)
  with pytest.raises(UserError, match=r'train labels span \[0, 10\], outside \[0, 10\)'):
    trainer_lib.load_data(tiny_config(), ('train', 'validation'))


def test_a_large_remainder_past_the_last_batch_is_warned_about(caplog):
  config = tiny_config(**{'data.limit': 120})  # 3 batches of 32: 24 images left out
  with caplog.at_level('WARNING'):
    trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
  assert 'trains on 96 of the 120 training images (20% left out' in caplog.text
  caplog.clear()
  config = tiny_config(**{'data.limit': 100})  # 4 left out: not worth a line
  with caplog.at_level('WARNING'):
    trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
  assert 'left out' not in caplog.text
