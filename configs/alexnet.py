"""AlexNet baseline for the size comparison: AlexNet's widths with the CIFAR (32x32) form."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'alexnet'
  config.learning_rate = 0.02
  return config
