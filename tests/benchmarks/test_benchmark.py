"""Benchmark report: every field present and sane on a tiny config (no timing asserts)."""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import benchmark
from benchmarks import torch_reference
from conftest import REPO_ROOT, tiny_config

_SPEED_FIELDS = ('compile_seconds', 'epoch_seconds', 'train_images_per_second',
                 'eval_images_per_second', 'train_tflops', 'eval_tflops')


def _config(**overrides):
  """Two steps of 32 per epoch, one evaluation batch of 64."""
  return tiny_config(**{'data.synthetic_train_size': 128, 'data.val_size': 64, **overrides})


def _check_speed(report):
  for field in _SPEED_FIELDS:
    assert math.isfinite(report[field]) and report[field] > 0, field
  assert report['images_per_epoch'] == 64
  assert report['eval_images'] == 64
  assert report['device_count'] >= 1 and report['device_kind']


def _check_reached(tta):
  assert tta['reached'] and tta['epochs'] == 1  # target 0: the first evaluation
  assert tta['seconds_including_compile'] > tta['seconds_excluding_compile'] > 0


@pytest.fixture(scope='module')
def jax_report():
  return benchmark.run(_config(), repeats=1, target_accuracy=0.0)


def test_jax_report_has_positive_finite_fields(jax_report):
  _check_speed(jax_report['jax'])
  _check_reached(jax_report['jax']['time_to_accuracy'])
  assert jax_report['jax']['loop'] == 'python'  # epoch_loop=auto on CPU
  assert jax_report['jax']['jax_version'] and jax_report['jax']['flax_version']
  assert jax_report['macs_per_image'] > 0
  assert jax_report['train_flops_per_image'] == 3 * jax_report['eval_flops_per_image']
  assert jax_report['jax']['peak_tflops'] is None  # CPU: no known peak
  assert 'torch' not in jax_report
  json.dumps(jax_report)  # serialisable as written by --out


def test_summary_line_reads_the_report(jax_report):
  line = benchmark.summary_line('jax', jax_report['jax'])
  assert 'img/s' in line and 'val accuracy after 1 epochs' in line


@pytest.mark.slow  # cold compiles of a second epoch program
def test_scanned_loop_and_an_unreached_target():
  report = benchmark.run(_config(epoch_loop='scan'), repeats=1, target_accuracy=2.0)
  _check_speed(report['jax'])
  assert report['jax']['loop'] == 'scan'
  tta = report['jax']['time_to_accuracy']
  assert not tta['reached'] and tta['seconds_including_compile'] is None
  assert len(tta['history']) == tta['max_epochs'] == 1
  assert 'not reached in 1 epochs' in benchmark.summary_line('jax', report['jax'])


def test_peak_table_matches_device_kinds():
  assert benchmark.peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.0
  assert benchmark.peak_tflops('NVIDIA H100 PCIe', 'bfloat16') == 756.0
  assert benchmark.peak_tflops('NVIDIA A100-SXM4-40GB', 'float32') == 156.0
  assert benchmark.peak_tflops('cpu', 'float32') is None


def test_torch_reference_matches_the_report_format():
  pytest.importorskip('torch')
  report = benchmark.run(_config(), repeats=1, target_accuracy=0.0, with_torch=True,
                         torch_compile='none')
  _check_speed(report['torch'])
  _check_reached(report['torch']['time_to_accuracy'])
  assert report['torch']['model_source'] in (torch_reference.TORCHVISION,
                                             torch_reference.LOCAL_COPY)
  assert report['jax_over_torch_images_per_second'] > 0


def test_torch_reference_model_mirrors_ours():
  pytest.importorskip('torch')
  from squeezenet_jax import accounting  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'model.base_e': 128, 'model.incr_e': 128,
                          'model.squeeze_ratio': 0.125})  # squeezenet1_1's widths
  model, _ = torch_reference.build_model(config)
  params = sum(p.numel() for p in model.parameters())
  assert params == accounting.summarize(config)['total_params']


def test_torch_reference_skips_what_it_does_not_model():
  pytest.importorskip('torch')
  with pytest.raises(torch_reference.Unsupported):
    torch_reference.build_model(_config(**{'model.bypass': 'simple'}))


def test_a_failing_torch_reference_keeps_the_jax_figures(monkeypatch):
  """A torch.compile or CUDA failure is recorded; the JAX half is written before it."""
  import contextlib  # pylint: disable=g-import-not-at-top

  class Broken:
    def __init__(self, *args):
      raise RuntimeError('BackendCompilerFailed: inductor\nmore lines')

  monkeypatch.setattr(torch_reference, 'unavailable_reason', lambda: None)
  monkeypatch.setattr(torch_reference, 'fresh_compile_cache', contextlib.nullcontext)
  monkeypatch.setattr(torch_reference, 'TorchRunner', Broken)
  written = []
  report = benchmark.run(_config(), repeats=1, with_torch=True, write=written.append)
  assert [w['torch'] for w in written] == [{'skipped': 'not finished'}, report['torch']]
  _check_speed(written[0]['jax'])
  assert report['torch'] == {'skipped': 'the PyTorch reference failed: RuntimeError: '
                                        'BackendCompilerFailed: inductor', 'failed': True}
  assert 'jax_over_torch_images_per_second' not in report


@pytest.mark.parametrize('args, message', [
    (['--config=configs/nonexist.py'], 'error: --config=configs/nonexist.py: no such file'),
    (['--config=configs/tiny.py', '--repeats=abc'], 'error: flag --repeats=abc: invalid literal'),
    (['--config=configs/tiny.py', '--config.batch_sise=8'], 'the config has no field batch_sise'),
    (['--config=configs/tiny.py', '--bogus'], "error: unknown command line flag 'bogus'"),
])
def test_a_bad_benchmark_command_is_one_error_line(args, message):
  result = subprocess.run([sys.executable, '-m', 'benchmarks.benchmark', *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
