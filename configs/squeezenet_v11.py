"""SqueezeNet 1.1 (64 3x3/2 stem, 2.4x fewer MACs than 1.0) with the CIFAR stem."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.version = '1.1'
  return config
