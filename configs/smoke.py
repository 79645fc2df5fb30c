"""Smoke run: synthetic data, a small batch, two epochs; trains in well under a minute on CPU."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'synthetic'
  config.data.synthetic_train_size = 1024
  config.data.synthetic_eval_size = 256
  config.data.val_size = 256
  config.model.dropout = 0.0
  config.model.batch_norm = True
  config.batch_size = 64
  config.eval_batch_size = 256
  config.num_epochs = 2
  config.learning_rate = 0.05
  config.warmup_epochs = 0.5
  return config
