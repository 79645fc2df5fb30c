"""`--mode=eval`: score a run's latest checkpoint on one split.

The model comes from the run's own config.json; only `data.*` may be overridden, to
choose what to evaluate on (e.g. a test archive the run never saw). Only the
checkpoint's `model` item is restored. Scores are merged into the run's results.json
(`test_accuracy` for the test split, `val_accuracy` for validation; with TTA also
`*_tta`), holding the workdir's lock while writing.
"""

from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from squeezenet_jax import checkpoints
from squeezenet_jax import config_utils
from squeezenet_jax import sharding
from squeezenet_jax import validation
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.training import setup


def run_config(workdir: str, overrides: dict[str, Any],
               base: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The run's own config with command-line overrides (dotted names, e.g. `data.path`).

  `data.*` overrides may choose other images to score, never other held-out images
  or other inputs (`dataset_lib.check_run_override`); a `data.path` on a run trained
  from another source means that folder or archive, so the source becomes `folder`.
  `base`: the run's config as the mode completed it (default: its config.json).
  """
  config = workdir_lib.load_config(workdir) if base is None else base
  overrides = dict(overrides)
  if ('data.path' in overrides and 'data.source' not in overrides
      and config.data.source != 'folder'):
    logging.warning('Scoring data.path=%s with data.source=folder (the run was trained '
                    'from data.source=%s).', overrides['data.path'], config.data.source)
    overrides['data.source'] = 'folder'
  for name, value in overrides.items():
    if name.startswith('data.') and name[len('data.'):] in config.data:
      dataset_lib.check_run_override(name[len('data.'):],
                                     config_utils.get_field(config, name), value)
    config_utils.set_field(config, name, value, '--config override')
  validation.validate(config)
  return config


def metric_prefix(split: str) -> str:
  """results.json names: val_accuracy for the validation split, test_accuracy for test."""
  return 'val' if split == 'validation' else split


class RestoredRun:
  """A trained run's model (from its checkpoint) and a scorer for one split."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, fallback: bool = False):
    self.workdir, self.config = workdir, config
    self.split = dataset_lib.resolve_eval_split(config.data)
    self.checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                                 read_only=True)
    mesh = sharding.make_mesh()
    self.graphdef, self.variables, self.step = setup.restore_model(
        config, self.checkpointer, mesh, fallback=fallback)
    data = setup.load_data(config, (self.split,), workdir_lib.read_classes(workdir))
    self.data_description = data.description
    self.scorer = setup.Scorer(config, self.graphdef, data, mesh)

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


def run(workdir: str, overrides: dict[str, Any], tta: bool = False,
        fallback: bool = False) -> dict[str, Any]:
  """Scores the run's checkpoint on `data.eval_split`; merges into results.json."""
  config = run_config(workdir, overrides)
  with workdir_lib.locked(workdir, 'eval'):
    restored = RestoredRun(workdir, config, fallback=fallback)
    prefix = metric_prefix(restored.split)
    scores = {f'{prefix}_{k}': v for k, v in restored.score().items()}
    if tta:
      scores.update({f'{prefix}_{k}_tta': v for k, v in restored.score(tta=True).items()})
    logging.info('step %d on %s (%d images): %s', restored.step, restored.split,
                 restored.num_images, ', '.join(f'{k} {v:.4f}' for k, v in scores.items()))
    # Merged into the run's results.json: training's figures stay, this split's are added.
    return workdir_lib.merge_json(Path(workdir) / workdir_lib.RESULTS_FILE, {
        **scores, f'{prefix}_images': restored.num_images,
        f'{prefix}_data': restored.data_description,
        f'{prefix}_checkpoint_step': restored.step, **restored.size_fields(),
        'checkpoint_bytes': restored.checkpointer.step_bytes(restored.step)})
