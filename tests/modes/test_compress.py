"""`--mode=compress`: stages fine-tuned through the trainer's compiled step, exported,
decoded exactly, reported; preempted and killed runs end identical to uninterrupted ones."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO_ROOT, tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax import formats
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax import trained_run
from squeezenet_jax import exports
from squeezenet_jax.compression import quantize
from squeezenet_jax import size_report
from squeezenet_jax.compression import container
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import pruning
from squeezenet_jax.compression import sharing
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import compress
from squeezenet_jax.modes import export
from squeezenet_jax.training import loop
from squeezenet_jax.training.preemption import Preempted

pytestmark = pytest.mark.slow  # the quick tier leaves this file out

# Three stages, one of each method; pruning ramps over all of its 3 epochs (12 steps each).
OVERRIDES = {
    'data.eval_split': 'validation', 'compress.stages': 'pruned,shared,qat_int4',
    'compress.pruned.epochs': 3, 'compress.pruned.sparsity': 0.5, 'compress.pruned.ramp': 1.0,
    'compress.shared.epochs': 1, 'compress.qat_int4.epochs': 1}
STEPS_PER_EPOCH = 12  # 384 training images of configs/tiny.py, batches of 32
PRUNED_ONLY = {**OVERRIDES, 'compress.stages': 'pruned'}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(trained, compressed): a tiny trained run and a copy of it compressed."""
  trained = tmp_path_factory.mktemp('trained')
  loop.train_and_evaluate(tiny_config(), str(trained))
  compressed = tmp_path_factory.mktemp('compressed') / 'run'
  shutil.copytree(trained, compressed)
  report = compress.run(str(compressed), trained_run.config_for(str(compressed), 'compress', OVERRIDES))
  return trained, compressed, report


def _rows(report):
  return {row['format']: row for row in report['formats']}


def _model_item(directory, step):
  """A stage checkpoint's `model` item as saved (trainable params, BN statistics, stage)."""
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore((directory / 'checkpoints' / str(step) / 'model').absolute())


def _kernels(tree):
  return [np.asarray(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
          if quantize.is_kernel(path)]


def test_every_stage_is_exported_rescored_and_reported(runs):
  _, workdir, report = runs
  rows = _rows(report)
  assert list(rows) == [*formats.WEIGHTS, 'pruned', 'shared', 'qat_int4']
  params = report['params']
  for name in ('pruned', 'shared', 'qat_int4'):
    row = rows[name]
    assert row['bytes'] == checkpoints.directory_bytes(workdir / 'exports' / name) > 0
    assert row['bits_per_param'] == pytest.approx(8 * row['bytes'] / params)
    assert row['accuracy_delta'] == pytest.approx(row['accuracy'] - rows['float32']['accuracy'])
  assert rows['pruned']['sparsity'] == pytest.approx(0.5, abs=0.01)
  assert rows['shared']['sparsity'] >= rows['pruned']['sparsity'] - 1e-6  # zeros stay zero
  assert [rows[n]['finetune_epochs'] for n in ('pruned', 'shared', 'qat_int4')] == [3, 4, 1]
  # Trained sharing at 4 bits beats int8 codes of the same pruned weights.
  assert rows['shared']['bytes'] < rows['pruned']['bytes'] < rows['int8']['bytes']
  assert json.loads((workdir / 'sizes.json').read_text()) == report
  markdown = (workdir / 'sizes.md').read_text()
  assert all(f'| {name} |' in markdown for name in rows)
  assert 'gradual magnitude pruning to 50%' in markdown
  assert (workdir / 'sizes.png').read_bytes().startswith(b'\x89PNG')


def test_each_file_scores_as_reported_from_disk(runs):
  _, workdir, report = runs
  restored = trainer_lib.RestoredRun(str(workdir), trained_run.config_for(
      str(workdir), 'compress', OVERRIDES))
  for name in ('shared', 'qat_int4'):
    stored = container.read(workdir / 'exports' / name / formats.FILE)
    scores = export.score(restored, quantize.dequantize(stored))
    assert scores['accuracy'] == pytest.approx(_rows(report)[name]['accuracy'])


def test_pruned_weights_stay_zero_through_the_compiled_steps(runs):
  _, workdir, _ = runs
  stage = workdir / 'compress' / 'pruned'
  schedule = pruning.Schedule(final_sparsity=0.5, end_step=3 * STEPS_PER_EPOCH)
  previous = None
  for epoch in (1, 2, 3):
    model = _model_item(stage, epoch * STEPS_PER_EPOCH)
    kernels, masks = _kernels(model['params']), _kernels(model['stage']['masks'])
    total = sum(m.size for m in masks)
    pruned = sum(int((~m).sum()) for m in masks)
    # Per layer, the schedule's sparsity at this step (rounded per kernel).
    assert pruned / total == pytest.approx(float(schedule(epoch * STEPS_PER_EPOCH)), abs=0.01)
    for w, m in zip(kernels, masks):
      assert np.all(w[~m] == 0.0)  # exactly zero after momentum and weight decay
      assert np.all(w[m] != 0.0)
    if previous is not None:  # the pruned set only grows
      assert all(not np.any(~a & b) for a, b in zip(previous, masks))
    previous = masks
  assert 0 < pruned / total


def test_trained_centroids_change_while_assignments_stay_fixed(runs):
  _, workdir, _ = runs
  pruned = _model_item(workdir / 'compress' / 'pruned', 3 * STEPS_PER_EPOCH)
  start = pruning.apply_masks(pruned['params'], pruned['stage']['masks'])
  initial, codes = sharing.prepare(jax.device_get(start), bits=4)
  trained = _model_item(workdir / 'compress' / 'shared', STEPS_PER_EPOCH)
  jax.tree.map(np.testing.assert_array_equal, trained['stage']['codes'], codes)
  moved = [np.mean(a != b) for a, b in zip(_kernels(trained['params']), _kernels(initial))]
  assert min(moved) > 0.5  # most centroids of every kernel moved
  # The file holds exactly these centroids and codes.
  stored = container.read(workdir / 'exports' / 'shared' / formats.FILE)['params']
  is_shared = lambda x: isinstance(x, quantize.SharedWeights)
  shared = [x for x in jax.tree.leaves(stored, is_leaf=is_shared) if is_shared(x)]
  weights = sharing.kernels(trained['params'], trained['stage']['codes'])
  assert len(shared) == len(_kernels(codes))
  for x, c, centroids, w in zip(shared, _kernels(codes), _kernels(trained['params']),
                                _kernels(weights)):
    np.testing.assert_array_equal(x.indices, c.ravel())
    np.testing.assert_array_equal(x.codebook[1:], centroids)
    np.testing.assert_array_equal(x.dequantize(), w)


def test_the_entropy_coded_file_decodes_to_exactly_the_quantized_weights(runs):
  _, workdir, _ = runs
  trained = _model_item(workdir / 'compress' / 'qat_int4', STEPS_PER_EPOCH)
  settings = plan.Settings('qat', bits=4)
  state = plan.Stage(masks=trained['stage']['masks'], codes=None,
                     sparsity=trained['stage']['sparsity'], settings=settings)
  expected = state.encode(trained['params'])
  stored = container.read(workdir / 'exports' / 'qat_int4' / formats.FILE)
  is_codes = lambda x: isinstance(x, dict) and set(x) == {'q', 'scale'}
  got = jax.tree.leaves(stored['params'], is_leaf=is_codes)
  want = jax.tree.leaves(expected, is_leaf=is_codes)
  assert len(got) == len(want) and any(is_codes(x) for x in got)
  for a, b in zip(got, want):
    if is_codes(a):
      assert a['q'].min() >= -8 and a['q'].max() <= 7
      np.testing.assert_array_equal(a['q'], b['q'])
      np.testing.assert_array_equal(a['scale'], b['scale'])
    else:  # vectors are stored as float16 (compress.vector_dtype)
      np.testing.assert_array_equal(a, np.asarray(b).astype(np.float16).astype(np.float32))


def _fresh_copy(trained, tmp_path, runs_report):
  """The trained run with the compressed run's sizes.json (so its float32 row is reused)."""
  workdir = tmp_path / 'run'
  shutil.copytree(trained, workdir)
  (workdir / 'sizes.json').write_text(json.dumps(runs_report))
  return workdir


def test_sigterm_saves_the_stage_and_a_rerun_ends_identical(runs, tmp_path, monkeypatch):
  trained, compressed, report = runs
  workdir = _fresh_copy(trained, tmp_path, report)
  # As if SIGTERM arrived during the first epoch: the loop saves, then stops.
  monkeypatch.setattr(loop.multiprocess, 'agreed_signal', lambda signum: signal.SIGTERM)
  with pytest.raises(Preempted) as stopped:
    compress.run(str(workdir), trained_run.config_for(str(workdir), 'compress', PRUNED_ONLY))
  assert stopped.value.exit_code == 143
  stage = workdir / 'compress' / 'pruned'
  assert checkpoints.Checkpointer(stage / 'checkpoints').all_steps() == [STEPS_PER_EPOCH]
  assert not (workdir / 'exports' / 'pruned').exists()
  monkeypatch.undo()
  compress.run(str(workdir), trained_run.config_for(str(workdir), 'compress', PRUNED_ONLY))
  name = f'exports/pruned/{formats.FILE}'
  assert (workdir / name).read_bytes() == (compressed / name).read_bytes()


def test_a_killed_compress_run_resumes_to_the_same_file(runs, tmp_path):
  trained, compressed, report = runs
  workdir = _fresh_copy(trained, tmp_path, report)
  flags = [f'--config.{k}={v}' for k, v in PRUNED_ONLY.items()]
  process = subprocess.Popen(
      [sys.executable, 'main.py', '--mode=compress', f'--workdir={workdir}', *flags],
      cwd=REPO_ROOT, env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)
  metrics = workdir / 'compress' / 'pruned' / 'metrics.jsonl'
  deadline = time.time() + 240
  while not (metrics.exists() and metrics.read_text().strip()):
    assert process.poll() is None and time.time() < deadline, process.stderr.read()[-2000:]
    time.sleep(0.05)
  process.kill()  # SIGKILL, mid-stage: after its first epoch, before its last
  assert process.wait(timeout=60) == -signal.SIGKILL
  assert not (workdir / 'exports' / 'pruned').exists()
  # The rerun holds the lock the kernel released, resumes the stage and ends identical.
  compress.run(str(workdir), trained_run.config_for(str(workdir), 'compress', PRUNED_ONLY))
  name = f'exports/pruned/{formats.FILE}'
  assert (workdir / name).read_bytes() == (compressed / name).read_bytes()
  final = 3 * STEPS_PER_EPOCH
  ours, theirs = (_model_item(w / 'compress' / 'pruned', final) for w in (workdir, compressed))
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_a_rerun_reuses_finished_stages_and_refuses_changed_ones(runs, monkeypatch):
  _, workdir, report = runs
  monkeypatch.setattr(export, 'score', lambda *a: pytest.fail('a finished stage was rescored'))
  rerun = compress.run(str(workdir), trained_run.config_for(str(workdir), 'compress', OVERRIDES))
  assert rerun.pop(exports.ID_KEY) != report[exports.ID_KEY]  # committed anew, unchanged:
  assert rerun == {k: v for k, v in report.items() if k != exports.ID_KEY}
  with pytest.raises(UserError, match='other settings'):
    compress.run(str(workdir), trained_run.config_for(str(workdir), 'compress', {**OVERRIDES, 'compress.pruned.sparsity': 0.6}))


def test_export_after_compress_keeps_the_compress_rows(runs):
  _, workdir, report = runs
  again = export.run(str(workdir), trained_run.config_for(str(workdir), 'export', {'data.eval_split': 'validation'}))
  # The export's own formats first (with the deploy rows compress does not write),
  # then every compress row unchanged.
  stages = [r for r in report['formats'] if r['format'] in report['compress']]
  assert [r['format'] for r in again['formats']][-len(stages):] == [r['format'] for r in stages]
  assert {'onnx', 'onnx_int8'} <= {r['format'] for r in again['formats']}
  # Their own figures stay; ratios to the float32 file follow its (re-exported) size.
  own = lambda row: {k: row[k] for k in ('format', 'bytes', 'accuracy', 'loss', 'sparsity',
                                         'bits_per_param', 'finetune_epochs')}
  assert [own(r) for r in again['formats'] if r['format'] in report['compress']] == [
      own(r) for r in stages]
  assert again['compress'] == report['compress']


@pytest.mark.parametrize('overrides, message', [
    ({'compress.stages': 'pruned,huffman'}, "names 'huffman', which is not a stage"),
    ({'compress.stages': 'shared,pruned'}, r'compress.shared.start=.pruned. is not allowed'),
    ({'compress.qat_int4.bits': 3}, 'bits=3 is not allowed with method qat'),
    ({'compress.pruned.sparsity': 1.0}, r'compress.pruned.sparsity=1.0 is not allowed'),
    ({'compress.pruned.initial_sparsity': 0.9}, 'exceeds'),
    ({'compress.coding': 'huffman'}, 'compress.coding'),
])
def test_bad_compress_settings_are_refused_before_anything_runs(tmp_path, overrides, message):
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  with pytest.raises(UserError, match=message):
    compress.run(str(tmp_path), trained_run.config_for(str(tmp_path), 'compress', overrides))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['config.json']


def test_a_reference_run_is_compared_at_equal_accuracy():
  ours = [{'format': 'float32', 'bytes': 2_800_000, 'accuracy': 0.53},
          {'format': 'qat_int4', 'bytes': 330_000, 'accuracy': 0.531},
          {'format': 'shared', 'bytes': 240_000, 'accuracy': 0.522},
          {'format': 'tiny', 'bytes': 100_000, 'accuracy': 0.40}]
  alexnet = [{'format': 'float32', 'bytes': 144_000_000, 'accuracy': 0.60},
             {'format': 'shared', 'bytes': 6_000_000, 'accuracy': 0.59},
             {'format': 'pruned', 'bytes': 3_000_000, 'accuracy': 0.50}]
  # The weaker float32 is ours (0.53): the level is 0.52, met by our shared, their shared.
  assert size_report.equal_accuracy(ours, alexnet) == pytest.approx({
      'accuracy': 0.52, 'format': 'shared', 'bytes': 240_000, 'reference_format': 'shared',
      'reference_bytes': 6_000_000, 'ratio': 25.0})


def test_the_report_draws_and_tables_a_reference_run(runs, tmp_path):
  trained, workdir, report = runs
  reference = size_report.reference_report(str(workdir), report['eval_split'],
                                           report['eval_images'])
  report = {**report, 'reference': {
      **reference, 'equal_accuracy': size_report.equal_accuracy(report['formats'],
                                                                reference['formats'])}}
  size_report.write_sizes(tmp_path, report)
  markdown = (tmp_path / 'sizes.md').read_text()
  assert 'At equal accuracy' in markdown and '1.0x' in markdown
  assert (tmp_path / 'sizes.png').read_bytes().startswith(b'\x89PNG')
  with pytest.raises(UserError, match='compare on the same data'):
    size_report.reference_report(str(workdir), 'test', report['eval_images'])
  with pytest.raises(UserError, match='not found'):
    size_report.reference_report(str(trained), report['eval_split'], report['eval_images'])


def test_predict_classifies_with_a_stage_file(runs):
  _, workdir, _ = runs
  from squeezenet_jax.modes import predict  # pylint: disable=g-import-not-at-top
  config = trained_run.config_for(str(workdir), 'compress', {})
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  shared = predict.logits(str(workdir), config, 'shared', images)
  # The stage's own weights: 4-bit codebooks, so at most 16 values per kernel.
  weights = formats.read(workdir / 'exports' / 'shared')
  assert all(np.unique(k).size <= 16 for k in _kernels(weights['params']))
  assert not np.allclose(shared, predict.logits(str(workdir), config, 'float32', images))
  with pytest.raises(UserError, match='or a stage --mode=compress exported'):
    predict.predict(str(workdir), trained_run.config_for(str(workdir), 'predict', {}), [str(workdir)], fmt='pruned_twice')
