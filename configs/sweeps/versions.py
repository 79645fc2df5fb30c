"""SqueezeNet 1.0 and 1.1 against the AlexNet baseline (the paper's Table 2 comparison)."""

from configs import alexnet
from configs import default


def get_config():
  return default.get_config()


def get_sweep():
  # AlexNet keeps configs/alexnet.py's learning rate: the default is too high for it.
  return [{'name': 'squeezenet_1.0', 'model.version': '1.0'},
          {'name': 'squeezenet_1.1', 'model.version': '1.1'},
          {'name': 'alexnet', 'model.name': 'alexnet',
           'learning_rate': alexnet.get_config().learning_rate}]
