"""Squeeze ratio from 0.125 to 1: the paper's Figure 2(a), size against accuracy."""

from configs import default
from squeezenet_jax import sweep


def get_config():
  config = default.get_config()
  config.model.version = '1.0'
  # The paper's fixed metaparameters for this figure (also the defaults).
  config.model.base_e = 128
  config.model.incr_e = 128
  config.model.pct3x3 = 0.5
  config.model.freq = 2
  return config


def get_sweep():
  return sweep.product({'model.squeeze_ratio': (0.125, 0.25, 0.5, 0.75, 1.0)})
