"""AlexNet-CIFAR trained with configs/squeezenet_best.py's recipe, for the comparison."""

from configs import squeezenet_best


def get_config():
  config = squeezenet_best.get_config()
  config.model.name = 'alexnet'
  config.model.bypass = 'none'
  config.model.dropout = 0.5
  config.learning_rate = 0.05  # 36M parameters: the SqueezeNet peak rate diverges
  return config
