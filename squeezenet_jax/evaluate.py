"""`--mode=eval`: score a run's latest checkpoint on one split.

The model comes from the run's own config.json; only `data.*` may be overridden, to
choose what to evaluate on (e.g. a test archive the run never saw).
"""

from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from squeezenet_jax import checkpoints
from squeezenet_jax import config_utils
from squeezenet_jax import input_pipeline
from squeezenet_jax import train
from squeezenet_jax import workdir as workdir_lib


def run_config(workdir: str, data_overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """The run's config with the given `data.*` overrides (dotted names below `data`)."""
  config = workdir_lib.load_config(workdir)
  for name, value in data_overrides.items():
    config_utils.set_field(config, f'data.{name}', value, '--config.data override')
  return config


def metric_prefix(split: str) -> str:
  """results.json names: val_accuracy for the validation split, test_accuracy for test."""
  return 'val' if split == 'validation' else split


def run(workdir: str, data_overrides: dict[str, Any], tta: bool = False) -> dict[str, Any]:
  config = run_config(workdir, data_overrides)
  split = input_pipeline.resolve_eval_split(config.data)
  checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir), read_only=True)
  exp = train.Experiment(config, splits=(split,))
  exp.restore(checkpointer)
  scores = exp.score(split, tta=tta)
  logging.info('step %d on %s (%d images): accuracy %.4f, loss %.4f', int(exp.state.step),
               split, exp.eval_split(split).size, scores['accuracy'], scores['loss'])
  # Merged into the run's results.json: training's figures stay, this split's are added.
  results_path = Path(workdir) / workdir_lib.RESULTS_FILE
  results = workdir_lib.read_json(results_path) if results_path.exists() else {}
  prefix = metric_prefix(split)
  results.update({f'{prefix}_{k}': v for k, v in scores.items()})
  results[f'{prefix}_images'] = exp.eval_split(split).size
  results.update(train.model_size_fields(config, exp.state.params))
  results.update(checkpoint_bytes=checkpointer.step_bytes(),
                 checkpoint_step=checkpointer.latest_step())
  workdir_lib.write_json(results_path, results)
  return results
