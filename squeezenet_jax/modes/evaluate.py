"""`--mode=eval`: score a run's latest checkpoint on one split.

The model comes from the run's own config.json; only `data.*` may be overridden, to
choose what to evaluate on (e.g. a test archive the run never saw). Only the
checkpoint's `model` item is restored.
"""

from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from squeezenet_jax import checkpoints
from squeezenet_jax import config_utils
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.training import setup


def run_config(workdir: str, data_overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """The run's config with the given `data.*` overrides (dotted names below `data`)."""
  config = workdir_lib.load_config(workdir)
  for name, value in data_overrides.items():
    config_utils.set_field(config, f'data.{name}', value, '--config.data override')
  return config


def metric_prefix(split: str) -> str:
  """results.json names: val_accuracy for the validation split, test_accuracy for test."""
  return 'val' if split == 'validation' else split


class RestoredRun:
  """A trained run's model (from its checkpoint) and a scorer for one split."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    self.workdir, self.config = workdir, config
    self.split = dataset_lib.resolve_eval_split(config.data)
    self.checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                                 read_only=True)
    mesh = sharding.make_mesh()
    self.graphdef, self.variables, self.step = setup.restore_model(config, self.checkpointer,
                                                                   mesh)
    self.scorer = setup.Scorer(config, self.graphdef,
                               setup.load_data(config, (self.split,)), mesh)

  @property
  def num_images(self) -> int:
    return self.scorer.split(self.split).size

  def score(self, variables: setup.ModelVars | None = None,
            tta: bool = False) -> dict[str, float]:
    return self.scorer(self.variables if variables is None else variables, self.split, tta)

  def size_fields(self) -> dict[str, int]:
    return setup.size_fields(self.config, self.graphdef, self.variables)

  def trained(self) -> dict[str, Any]:
    """How far the restored checkpoint trained: steps, images seen, epochs."""
    results_path = Path(self.workdir) / workdir_lib.RESULTS_FILE
    results = workdir_lib.read_json(results_path) if results_path.exists() else {}
    epochs = results.get('epochs') if results.get('steps') == self.step else None
    return {'steps': self.step, 'images_seen': self.step * self.config.batch_size,
            'epochs': epochs}


def run(workdir: str, data_overrides: dict[str, Any], tta: bool = False) -> dict[str, Any]:
  restored = RestoredRun(workdir, run_config(workdir, data_overrides))
  scores = restored.score(tta=tta)
  logging.info('step %d on %s (%d images): accuracy %.4f, loss %.4f', restored.step,
               restored.split, restored.num_images, scores['accuracy'], scores['loss'])
  # Merged into the run's results.json: training's figures stay, this split's are added.
  results_path = Path(workdir) / workdir_lib.RESULTS_FILE
  results = workdir_lib.read_json(results_path) if results_path.exists() else {}
  prefix = metric_prefix(restored.split)
  results.update({f'{prefix}_{k}': v for k, v in scores.items()})
  results[f'{prefix}_images'] = restored.num_images
  results.update(restored.size_fields())
  results.update(checkpoint_bytes=restored.checkpointer.step_bytes(),
                 checkpoint_step=restored.checkpointer.latest_step())
  workdir_lib.write_json(results_path, results)
  return results
