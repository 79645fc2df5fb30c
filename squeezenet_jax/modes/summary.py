"""`--mode=summary`: print the per-layer table and write workdir/summary.json."""

import os
from typing import Any

import ml_collections

from squeezenet_jax import accounting
from squeezenet_jax import workdir as workdir_lib


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Summarizes the config's model, prints the table, writes summary.json and returns it."""
  summary = accounting.summarize(config)
  print(accounting.format_table(summary))
  workdir_lib.write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary
