"""Test setup: four CPU devices (to exercise data parallelism) and tiny configs."""

import os

# Must happen before jax is imported anywhere.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from pathlib import Path  # pylint: disable=g-import-not-at-top

import pytest  # pylint: disable=g-import-not-at-top

from configs import smoke  # pylint: disable=g-import-not-at-top

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
  """The smoke config shrunk to seconds on CPU; `overrides` use dotted names."""
  config = smoke.get_config()
  config.data.synthetic_train_size = 512
  config.data.synthetic_eval_size = 128
  config.data.val_size = 128
  config.data.image_size = 32
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 1
  config.model.base_e = 16
  config.model.incr_e = 16
  config.model.squeeze_ratio = 0.5  # 2-channel squeezes at these widths barely learn
  for name, value in overrides.items():
    node = config
    *parents, leaf = name.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


@pytest.fixture
def tiny():
  return tiny_config


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
  """Keeps decoded-data and compilation caches out of the user's home."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path_factory.getbasetemp() / 'cache'))
