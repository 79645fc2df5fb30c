"""`--mode=summary`: print the per-layer table and write workdir/summary.json."""

import json
import os
from typing import Any

import ml_collections

from squeezenet_jax import accounting


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Summarizes the config's model, prints the table, writes summary.json and returns it."""
  summary = accounting.summarize(config)
  print(accounting.format_table(summary))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary
