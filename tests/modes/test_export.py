"""`--mode=export`: exports reload from disk to the accuracy reported, sizes add up."""

import json
import shutil
import subprocess

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import copy_run
from conftest import tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax import formats
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax import trained_run
from squeezenet_jax import exports
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import container
from squeezenet_jax.deploy import onnx_export
from squeezenet_jax.deploy import stablehlo_export
from squeezenet_jax import size_report
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import WriteError
from squeezenet_jax.modes import export
from squeezenet_jax.modes import export_deploy
from squeezenet_jax.modes import predict


@pytest.fixture(scope='module')
def run(tmp_path_factory, tiny_run):
  """A tiny trained run (two kept steps), exported on its validation split."""
  workdir = copy_run(tiny_run, tmp_path_factory.mktemp('export') / 'run')
  results = workdir_lib.read_json(workdir / 'results.json')
  report = export.run(str(workdir), trained_run.config_for(str(workdir), 'export', {'data.eval_split': 'validation'}))
  return workdir, results, report


def _rows(report):
  return {row['format']: row for row in report['formats']}


def test_every_format_is_reported_with_its_files_on_disk(run):
  workdir, _, report = run
  rows = _rows(report)
  assert list(rows) == [*formats.WEIGHTS, 'onnx', 'onnx_int8']
  for fmt, row in rows.items():
    assert row['bytes'] == checkpoints.directory_bytes(workdir / 'exports' / fmt) > 0
    assert 0 <= row['accuracy'] <= 1
  assert rows['float32']['accuracy_delta'] == 0
  # (On a model this small, orbax's per-array overhead can put int8 above bfloat16.)
  assert rows['compressed']['bytes'] < rows['int8']['bytes'] < rows['float32']['bytes']
  assert report['eval_split'] == 'validation' and report['eval_images'] == 128
  assert report['alexnet']['float32_bytes'] == report['alexnet']['params'] * 4
  assert rows['int8']['alexnet_ratio'] == pytest.approx(
      report['alexnet']['float32_bytes'] / rows['int8']['bytes'])


def test_deployable_exports_are_reported_beside_the_others(run):
  workdir, _, report = run
  rows = _rows(report)
  for fmt, path in (('onnx', 'onnx/model.onnx'), ('onnx_int8', 'onnx_int8/model.onnx'),
                    ('stablehlo', 'stablehlo/model.jax_exported')):
    row = report['stablehlo'] if fmt == 'stablehlo' else rows[fmt]
    assert (workdir / 'exports' / path).is_file()
    assert row['bytes'] == checkpoints.directory_bytes(workdir / 'exports' / fmt) > 0
    assert row['path'] == f'exports/{fmt}'
    # The same function and weights as float32: at most one of 128 images flips.
    assert row['accuracy'] == pytest.approx(rows['float32']['accuracy'], abs=1 / 128)
    assert row['accuracy_delta'] == pytest.approx(row['accuracy'] - rows['float32']['accuracy'])
  assert rows['onnx_int8']['bytes'] < rows['onnx']['bytes']
  # The data has a train split: int8 ranges come from training images, not the scored ones.
  assert rows['onnx_int8']['calibration_split'] == 'train'
  assert rows['onnx_int8']['calibration_images'] == 384  # tiny: 512 minus 128 validation


def test_size_report_files_are_written(run):
  workdir, _, report = run
  assert json.loads((workdir / 'sizes.json').read_text()) == report
  markdown = (workdir / 'sizes.md').read_text()
  assert all(f'| {fmt} |' in markdown for fmt in (*formats.WEIGHTS, 'onnx', 'onnx_int8',
                                                  'stablehlo'))
  assert 'calibrated on 384 images of `train`' in markdown
  assert (workdir / 'sizes.png').read_bytes().startswith(b'\x89PNG')


def test_float32_export_scores_like_the_checkpoint(run):
  _, results, report = run
  # train scores validation with the final state, which is the latest checkpoint.
  assert _rows(report)['float32']['accuracy'] == pytest.approx(results['val_accuracy'])


def test_an_export_rescored_from_disk_gives_the_reported_accuracy(run):
  workdir, _, report = run
  config = workdir_lib.load_config(str(workdir))
  config.data.eval_split = 'validation'
  restored = trainer_lib.RestoredRun(str(workdir), config)
  model = formats.read(workdir / 'exports' / 'compressed')
  scores = export.score(restored, model)
  assert scores['accuracy'] == pytest.approx(_rows(report)['compressed']['accuracy'])


def test_compressed_export_respects_the_prune_fraction(run):
  workdir, _, report = run
  fraction = report['export']['prune_fraction']
  stored = container.read(workdir / 'exports' / 'compressed' / container.FILE)
  kernels = [leaf for leaf in jax.tree.leaves(
      stored, is_leaf=lambda x: isinstance(x, quantize.SharedWeights))
             if isinstance(leaf, quantize.SharedWeights)]
  assert kernels
  for kernel in kernels:
    assert (kernel.indices == 0).sum() >= int(fraction * kernel.indices.size)
    assert kernel.codebook.size == 2**report['export']['bits']


def _du_apparent_file_bytes(path) -> int:
  """`du -sb` (apparent sizes) of `path`, less its directories' own sizes."""
  total = int(subprocess.run(['du', '-sb', str(path)], capture_output=True, text=True,
                             check=True).stdout.split()[0])
  dirs = subprocess.run(['find', str(path), '-type', 'd', '-printf', '%s\n'],
                        capture_output=True, text=True, check=True).stdout.split()
  return total - sum(map(int, dirs))


def test_checkpoint_accounting_adds_up_to_the_bytes_on_disk(run):
  workdir, results, report = run
  sizes = report['checkpoints']
  assert len(sizes['steps']) == 2
  assert results['checkpoint_sizes'] == sizes['steps']
  for step, parts in sizes['steps'].items():
    step_dir = workdir / 'checkpoints' / step
    assert parts['total_bytes'] == sum(v for k, v in parts.items() if k != 'total_bytes')
    assert parts['total_bytes'] == _du_apparent_file_bytes(step_dir)
    assert min(parts['model_bytes'], parts['opt_state_bytes'], parts['metadata_bytes']) > 0
  latest = sizes['steps'][str(results['checkpoint_step'])]
  assert latest['total_bytes'] == results['checkpoint_bytes']
  assert sizes['codec']['arrays']['id'] == 'zstd'
  assert sizes['compression']['model'] == pytest.approx(
      sizes['raw_bytes']['model'] / latest['model_bytes'])


def test_raw_bytes_count_the_arrays_in_memory():
  config = tiny_config(optimizer='sgd')
  variables = {'params': {'w': jax.numpy.zeros((3, 4))}, 'batch_stats': {}}
  # Nesterov SGD: a momentum per parameter and the schedule's int32 count; progress: an
  # int32 step and a key.
  assert size_report.raw_item_bytes(config, variables) == {
      'model': 48, 'opt_state': 52, 'progress': 12}


def test_predict_gives_the_same_logits_with_every_deployable_format(run):
  workdir, _, _ = run
  config = workdir_lib.load_config(str(workdir))
  assert predict.default_format(str(workdir)) == 'float32'  # exported: float32 by default
  images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  logits = {fmt: predict.logits(str(workdir), config, fmt, images)
            for fmt in ('checkpoint', 'float32', 'onnx', 'stablehlo', 'onnx_int8')}
  for fmt in ('float32', 'onnx', 'stablehlo'):
    np.testing.assert_allclose(logits[fmt], logits['checkpoint'], rtol=0, atol=1e-4)
  assert logits['onnx_int8'].shape == (5, config.model.num_classes)


def test_exports_carry_the_class_names_that_predict_reads_from_classes_json(run, tmp_path):
  """The deployable files carry the names for whoever ships them alone; predict reads
  the run's classes.json."""
  workdir, _, _ = run
  names = workdir_lib.read_classes(workdir)
  assert names == [f'class_{i}' for i in range(10)] == predict.class_names(str(workdir))
  assert stablehlo_export.read_metadata(
      workdir / 'exports' / 'stablehlo' / 'model.json')['class_names'] == names
  assert onnx_export.class_names(workdir / 'exports' / 'onnx' / 'model.onnx') == names
  assert predict.class_names(str(tmp_path)) is None  # no classes.json: indices


def test_data_with_only_a_test_split_calibrates_on_it_and_says_so(run, tmp_path, caplog):
  """A user's data.path holding only test/: int8 ranges from the split scored."""
  workdir, _, _ = run
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  rng = np.random.default_rng(0)
  for c in range(10):
    (tmp_path / 'data' / 'test' / f'class_{c}').mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
          tmp_path / 'data' / 'test' / f'class_{c}' / f'{i}.png')
  report = export.run(str(copy), trained_run.config_for(str(copy), 'export', {'data.source': 'folder', 'data.path': str(tmp_path / 'data')}))
  rows = _rows(report)
  assert report['eval_split'] == 'test' and report['eval_images'] == 30
  assert (rows['onnx_int8']['calibration_split'], rows['onnx_int8']['calibration_images']) == (
      'test', 30)
  assert 'calibrated on 30 images of `test`' in (copy / 'sizes.md').read_text()
  assert 'has no train split: the int8 ONNX export is calibrated on the images of test' in (
      caplog.text)


def test_sizes_json_describes_exactly_the_formats_on_disk(run):
  workdir, _, report = run
  on_disk = exports.formats_on_disk(workdir)
  assert on_disk == {row['format'] for row in report['formats']} | {'stablehlo'}
  assert report[exports.ID_KEY] == exports.committed_id(workdir)
  assert sorted(p.name for p in (workdir / 'exports').iterdir()) == sorted(on_disk)


def test_an_export_cut_while_converting_leaves_one_described_set(run, tmp_path, monkeypatch):
  workdir = tmp_path / 'copy'
  shutil.copytree(run[0], workdir)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(export_deploy.onnx_export, 'save_int8', killed)
  with pytest.raises(KeyboardInterrupt):
    export.run(str(workdir), trained_run.config_for(str(workdir), 'export', {'data.eval_split': 'validation'}))
  exports.check_complete(workdir)
  reported = json.loads((workdir / 'sizes.json').read_text())
  assert exports.formats_on_disk(workdir) == {row['format'] for row in reported['formats']}
  assert not (workdir / 'exports' / 'onnx').exists()  # not of this export: removed


def test_predict_names_the_exports_step_and_warns_when_training_went_on(run, tmp_path,
                                                                      caplog):
  workdir = tmp_path / 'copy'
  shutil.copytree(run[0], workdir)
  step = run[2]['trained']['steps']
  with caplog.at_level('INFO'):
    predict._say_step(str(workdir), 'float32')
  assert f'float32 export of step {step}' in caplog.text and 'trained on' not in caplog.text
  (workdir / 'checkpoints' / str(step + 12)).mkdir()
  with caplog.at_level('INFO'):
    predict._say_step(str(workdir), 'float32')
  assert f'trained on to step {step + 12}' in caplog.text


@pytest.mark.parametrize('fmt, damaged', [
    ('float32', 'ocdbt.process_0/d'), ('stablehlo', 'model.jax_exported'),
    ('onnx', 'model.onnx'), ('compressed', 'model.sqz')])
def test_predict_on_a_truncated_export_is_one_error_naming_it(run, tmp_path, fmt, damaged):
  workdir = tmp_path / 'copy'
  shutil.copytree(run[0], workdir)
  target = workdir / 'exports' / fmt / damaged
  for path in ([target] if target.is_file() else sorted(target.iterdir())):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  images = np.zeros((1, 32, 32, 3), np.uint8)
  with pytest.raises(UserError, match=f'{workdir / "exports" / fmt}.* cannot be read|damaged'):
    predict.logits(str(workdir), tiny_config(), fmt, images)


def test_predict_refuses_the_export_of_another_model(run, tmp_path):
  with pytest.raises(UserError, match='weights of another model'):
    predict.logits(str(run[0]), tiny_config(**{'model.base_e': 32}), 'float32',
                   np.zeros((1, 32, 32, 3), np.uint8))


def test_a_full_disk_during_export_keeps_the_previous_set(run, tmp_path, monkeypatch):
  workdir = tmp_path / 'copy'
  shutil.copytree(run[0], workdir)
  def written():  # every export file and the size report
    return {p: p.read_bytes() for p in sorted(workdir.rglob('*')) if p.is_file() and (
        'exports' in p.relative_to(workdir).parts or p.name.startswith('sizes'))}

  before = written()

  def full(*args, **kwargs):
    raise ValueError('RESOURCE_EXHAUSTED: Failed writing: No space left on device')

  monkeypatch.setattr(formats.ocp.StandardCheckpointer, 'save', full)
  with pytest.raises(WriteError, match='could not save the float32 export in .*exports/'
                                       '.partial/float32: No space left on device'):
    export.run(str(workdir), trained_run.config_for(str(workdir), 'export', {'data.eval_split': 'validation'}))
  assert written() == before
