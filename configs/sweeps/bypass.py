"""No, simple and complex bypass on SqueezeNet 1.0 (the paper's section 6, Table 3)."""

from configs import default
from squeezenet_jax.config_utils import product


def get_config():
  config = default.get_config()
  config.model.version = '1.0'  # the paper's bypass experiments predate 1.1
  return config


def get_sweep():
  return product({'model.bypass': ('none', 'simple', 'complex')})
