"""Share of 3x3 expand filters from 1% to 99%: the paper's Figure 2(b)."""

from configs import default
from squeezenet_jax import sweep


def get_config():
  config = default.get_config()
  config.model.version = '1.0'
  # The paper's fixed metaparameters for this figure: SR is 0.5 here, not 0.125.
  config.model.base_e = 128
  config.model.incr_e = 128
  config.model.freq = 2
  config.model.squeeze_ratio = 0.5
  return config


def get_sweep():
  return sweep.product({'model.pct3x3': (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)})
