"""`--mode=eval`: score a run's latest checkpoint on one split.

The model comes from the run's own config.json; only `data.*` (and the batch) may be
overridden, to choose what to evaluate on (e.g. a test archive the run never saw). Only the
checkpoint's `model` item is restored. Scores are merged into the run's results.json
(`test_accuracy` for the test split, `val_accuracy` for validation; with TTA also
`*_tta`), holding the workdir's lock while writing.
"""

from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.training import trainer as trainer_lib


def metric_prefix(split: str) -> str:
  """results.json names: val_accuracy for the validation split, test_accuracy for test."""
  return 'val' if split == 'validation' else split


def run(workdir: str, config: ml_collections.ConfigDict, tta: bool = False,
        fallback: bool = False) -> dict[str, Any]:
  """Scores the run's checkpoint on `data.eval_split`; merges into results.json.

  `config`: the run's, with this command's overrides (`trained_run.config_for`).
  """
  with workdir_lib.locked(workdir, 'eval'):
    restored = trainer_lib.RestoredRun(workdir, config, fallback=fallback)
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
