"""`ema_decay`: the run's model is a moving average of the trained weights."""

import json
import shutil

import jax
import numpy as np
import pytest

from conftest import copy_run, restored_params, tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax import sharding
from squeezenet_jax import trained_run
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import evaluate
from squeezenet_jax.modes import export
from squeezenet_jax.training import loop
from squeezenet_jax.training import steps as steps_lib
from squeezenet_jax.training import trainer as trainer_lib


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def test_the_average_ramps_up_then_decays_at_the_configured_rate():
  ema = {'params': {'w': np.zeros(3, np.float32)}, 'batch_stats': {'m': np.ones(2, np.float32)}}
  new_params, new_stats = {'w': np.full(3, 10.0, np.float32)}, {'m': np.zeros(2, np.float32)}
  first = steps_lib.ema_update(ema, new_params, new_stats, step=np.int32(1), decay=0.99)
  rate = 2 / 11  # (1 + step) / (10 + step): the first step keeps 2/11 of the start
  np.testing.assert_allclose(first['params']['w'], (1 - rate) * 10.0, rtol=1e-6)
  np.testing.assert_allclose(first['batch_stats']['m'], rate, rtol=1e-6)
  late = steps_lib.ema_update(ema, new_params, new_stats, step=np.int32(10_000), decay=0.99)
  np.testing.assert_allclose(late['params']['w'], 0.01 * 10.0, rtol=1e-5)


def test_the_average_starts_as_a_copy_not_an_alias_of_the_weights():
  """The step donates the state: a buffer in it twice could not be donated."""
  config = tiny_config(ema_decay=0.9)
  trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
  pointer = lambda a: a.addressable_shards[0].data.unsafe_buffer_pointer()
  for weight, average in zip(jax.tree.leaves(trainer.state.params),
                             jax.tree.leaves(trainer.state.ema['params']), strict=True):
    assert pointer(weight) != pointer(average)
  assert _equal(trainer.state.ema, trainer.live_vars)


def _trained(config):
  trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')),
                                mesh=sharding.make_mesh(jax.devices()[:1]))
  images, labels = trainer.device_train_data()
  epoch_fn, _ = trainer.compile_epoch(images, labels)
  trainer.state, _ = epoch_fn(trainer.state, images, labels)
  return trainer


def test_without_ema_decay_the_model_is_the_trained_weights():
  trainer = _trained(tiny_config())
  assert trainer.state.ema is None
  assert set(trainer.state.to_items()) == {'model', 'opt_state', 'progress'}
  assert _equal(trainer.model_vars, trainer.live_vars)


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
  """(workdir, config, results) of a one-epoch tiny run with an EMA."""
  config = tiny_config(ema_decay=0.9)
  workdir = tmp_path_factory.mktemp('ema') / 'run'
  return workdir, config, loop.train_and_evaluate(config, str(workdir))


def test_an_ema_run_checkpoints_the_average_as_its_model_and_resumes_the_weights(ema_run):
  workdir, config, results = ema_run
  checkpointer = checkpoints.Checkpointer(workdir / 'checkpoints', read_only=True)
  step_dir = checkpointer.step_dir(checkpointer.latest_step())
  assert (step_dir / 'live').is_dir()
  sizes = checkpoints.step_accounting(step_dir)
  assert sizes['live_bytes'] > 0 and sizes['model_bytes'] > 0
  # What eval/export/predict restore (the `model` item) is the average ...
  model = restored_params(workdir, config)
  trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
  trainer.restore(checkpointer)
  assert _equal(model, trainer.state.ema['params'])
  # ... and training resumes from the weights it averages, which differ from it.
  assert not _equal(trainer.state.ema['params'], trainer.state.params)
  # Both are scored: val_* of the model, val_live_* of the trained weights.
  assert 0 <= results['val_live_accuracy'] <= 1
  assert results['val_accuracy'] == trainer.score('validation')['accuracy']
  assert results['val_live_accuracy'] == trainer.score('validation', live=True)['accuracy']
  event = json.loads((workdir / 'metrics.jsonl').read_text().splitlines()[-1])
  assert event['val_live_accuracy'] == results['val_live_accuracy']


def test_eval_and_export_of_an_ema_run_use_the_average(ema_run, tmp_path):
  workdir, _, results = ema_run
  workdir = copy_run(workdir, tmp_path / 'run')
  scores = evaluate.run(str(workdir), trained_run.config_for(
      str(workdir), 'eval', {'data.eval_split': 'validation'}))
  assert scores['val_accuracy'] == pytest.approx(results['val_accuracy'])
  report = export.run(str(workdir), trained_run.config_for(
      str(workdir), 'export', {'data.eval_split': 'validation'}))
  float32 = next(row for row in report['formats'] if row['format'] == 'float32')
  assert float32['accuracy'] == pytest.approx(results['val_accuracy'])
  sizes = report['checkpoints']
  assert sizes['raw_bytes']['live'] == sizes['raw_bytes']['model']
  assert 'Live weights (EMA)' in (workdir / 'sizes.md').read_text()


@pytest.mark.slow
def test_an_ema_run_resumed_is_bitwise_equal_to_an_uninterrupted_one(tmp_path):
  config = tiny_config(num_epochs=2, ema_decay=0.9)
  full_dir, split_dir = tmp_path / 'full', tmp_path / 'split'
  full = loop.train_and_evaluate(config, str(full_dir))
  loop.train_and_evaluate(config, str(split_dir))
  steps = checkpoints.Checkpointer(split_dir / 'checkpoints').all_steps()
  shutil.rmtree(split_dir / 'checkpoints' / str(steps[-1]))
  resumed = loop.train_and_evaluate(config, str(split_dir))
  assert (resumed['val_accuracy'], resumed['val_live_accuracy']) == (
      full['val_accuracy'], full['val_live_accuracy'])
  assert _equal(restored_params(full_dir, config), restored_params(split_dir, config))
  live = []
  for workdir in (full_dir, split_dir):
    trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
    trainer.restore(checkpoints.Checkpointer(workdir / 'checkpoints', read_only=True))
    live.append(trainer.state.params)
  assert _equal(*live)


@pytest.mark.slow
def test_an_ema_scanned_epoch_equals_the_per_step_loop():
  config = tiny_config(ema_decay=0.9, **{'data.synthetic_train_size': 128 + 128})
  config.epoch_loop = 'scan'
  scanned = _trained(config)
  config.epoch_loop = 'python'
  stepped = _trained(config)
  for a, b in zip(_leaves(scanned.state.ema), _leaves(stepped.state.ema), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('ema_decay', [0.0, 0.9])
def test_resuming_with_the_ema_switched_is_one_error(tmp_path, ema_run, ema_decay):
  workdir = copy_run(ema_run[0], tmp_path / 'run')
  if ema_decay:  # a run without an EMA, resumed with one
    shutil.rmtree(workdir)
    loop.train_and_evaluate(tiny_config(), str(workdir))
  with pytest.raises(UserError, match=r'(holds a `live` item|holds no `live` item).*EMA'):
    loop.train_and_evaluate(tiny_config(num_epochs=2, ema_decay=ema_decay), str(workdir),
                            allow_config_change=True)
