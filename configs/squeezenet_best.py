"""Best SqueezeNet under 1 MB as int8: SqueezeNet 1.1 + BN + simple bypass, fast recipe.

Size: 730,570 parameters (the simple bypass adds none), so the int8 export is about
0.75 MB on disk. Recipe: Nesterov SGD at a high peak rate with a short warmup and
cosine decay, label smoothing, bfloat16 compute, and mirrored test-time augmentation
in validation. Chosen to fit 60 s of H100 training; its validation accuracy on the
JPEG CIFAR-10 archive is still to be measured on a GPU (see README).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.version = '1.1'
  config.model.stem = 'cifar'
  config.model.batch_norm = True
  config.model.bypass = 'simple'
  config.model.dropout = 0.1
  config.dtype = 'bfloat16'
  config.batch_size = 512
  config.num_epochs = 60
  config.optimizer = 'sgd'
  config.learning_rate = 0.2
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.label_smoothing = 0.1
  config.warmup_epochs = 2.0
  config.eval_every_epochs = 5
  config.checkpoint_every_epochs = 10
  config.eval_tta = True
  return config
