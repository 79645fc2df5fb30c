"""Tiny: a seconds-long synthetic run on CPU, for tests and subprocess checks."""

from configs import smoke


def get_config():
  config = smoke.get_config()
  config.data.synthetic_train_size = 512
  config.data.synthetic_eval_size = 128
  config.data.val_size = 128
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 1
  config.model.base_e = 16
  config.model.incr_e = 16
  config.model.squeeze_ratio = 0.5  # 2-channel squeezes at these widths barely learn
  return config
