"""SqueezeNet 1.0 (96 7x7/2 stem in the paper) with the CIFAR stem on CIFAR-10."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.version = '1.0'
  return config
