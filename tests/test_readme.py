"""The README's figures are the code's own: its tables (and docs/compression.md's BatchNorm
count) are checked against it."""

import re

import pytest

from conftest import REPO_ROOT
from configs import alexnet, default, squeezenet_v10
from squeezenet_jax import accounting
from squeezenet_jax import config_utils

README = (REPO_ROOT / 'README.md').read_text()
# Files that state the BatchNorm count in words (the README's Model sizes, the paper
# comparison of docs/compression.md).
BATCH_NORM_TEXTS = ('README.md', 'docs/compression.md')
IMAGENET_FORM = {'model.stem': 'imagenet', 'model.num_classes': 1000,
                 'data.image_size': 224, 'model.batch_norm': False}
# Model sizes rows: label -> the config and overrides the row describes.
MODEL_SIZES = {
    'SqueezeNet 1.1 (`default.py`)': (default, {}),
    'SqueezeNet 1.1, `--config.model.batch_norm=false`': (default, {'model.batch_norm': False}),
    'SqueezeNet 1.1, `--config.model.bypass=complex`': (default, {'model.bypass': 'complex'}),
    'SqueezeNet 1.0 (`squeezenet_v10.py`)': (squeezenet_v10, {}),
    'AlexNet (`alexnet.py`)': (alexnet, {}),
    'SqueezeNet 1.0, ImageNet form': (squeezenet_v10, IMAGENET_FORM),
    'SqueezeNet 1.1, ImageNet form': (default, IMAGENET_FORM),
    'AlexNet, ImageNet form (torchvision)': (alexnet, IMAGENET_FORM),
}


def _table_rows(heading: str) -> dict[str, list[str]]:
  section = README.split(f'\n## {heading}\n', 1)[1].split('\n## ', 1)[0]
  rows = [line.strip('|').split('|') for line in section.splitlines()
          if line.startswith('|') and not line.startswith('|---')]
  return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def _summary(module, overrides):
  config = module.get_config()
  for field, value in overrides.items():
    config_utils.set_field(config, field, value)
  return accounting.summarize(config)


@pytest.mark.parametrize('label', MODEL_SIZES)
def test_model_sizes_table_is_what_summary_counts(label):
  rows = _table_rows('Model sizes')
  assert set(rows) == set(MODEL_SIZES)
  summary = _summary(*MODEL_SIZES[label])
  *_, params, macs, float32_mb, int8_mb = rows[label]
  total = summary['total_params']
  assert (params, macs, float32_mb, int8_mb) == (
      f'{total:,}', f'{summary["macs"] / 1e6:.1f} M', f'{4 * total / 1e6:.2f}',
      f'{total / 1e6:.2f}')


@pytest.mark.parametrize('name', BATCH_NORM_TEXTS)
def test_the_batch_norm_count_in_the_text_is_the_summarys(name):
  summary, without = _summary(default, {}), _summary(default, {'model.batch_norm': False})
  text = ' '.join((REPO_ROOT / name).read_text().split())  # line breaks as spaces
  stated = re.search(r'BatchNorm \(([\d,]+) parameters, a scale and an offset per '
                     r'channel, in place of the convs\' ([\d,]+) biases', text)
  assert stated, f'{name} no longer states the BatchNorm count'
  biases = without['total_params'] - (summary['total_params'] - summary['batch_norm_params'])
  assert stated.groups() == (f'{summary["batch_norm_params"]:,}', f'{biases:,}')


@pytest.mark.parametrize('label, module', [
    ('parameters, SqueezeNet 1.1 (CIFAR stem + BN)', default),
    ('parameters, AlexNet-CIFAR', alexnet)])
def test_the_results_tables_parameters_are_what_summary_counts(label, module):
  figure = _table_rows('Results')[label][0]
  assert figure.strip('*').split(' ')[0].strip('*') == f'{_summary(module, {})["total_params"]:,}'
