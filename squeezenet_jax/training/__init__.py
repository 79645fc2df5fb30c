"""Training: pure functions, the Trainer that holds a run, and the loop that drives it.

  steps.py       train step, scanned / stepped epoch, evaluation (pure, jit-compiled)
  optim.py       optax optimizer and learning-rate schedule
  trainer.py     data on the device, model, state and compiled programs (Trainer, Scorer)
  preemption.py  SIGTERM/SIGINT to a checkpoint and exit 143/130
  loop.py        epochs, evaluation cadence, checkpoints, results (train_and_evaluate)
"""
