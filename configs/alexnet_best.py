"""AlexNet-CIFAR trained with configs/squeezenet_best.py's recipe, for the comparison.

`model.stem_pool` is SqueezeNet's alone; AlexNet-CIFAR keeps its own pools.
"""

from configs import squeezenet_best


def get_config():
  config = squeezenet_best.get_config()
  config.model.name = 'alexnet'
  config.model.bypass = 'none'
  config.model.stem_pool = True  # squeezenet-only field, back to the default
  config.model.dropout = 0.5
  config.learning_rate = 0.05  # 36M parameters: the SqueezeNet peak rate diverges
  return config
