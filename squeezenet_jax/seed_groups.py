"""Sweep points that differ only in `seed`, as one row each: mean, spread and count.

`product({'seed': (0, 1, 2), 'model.bypass': (...)})` trains each bypass three times;
`group_by_seed` turns those rows into one per bypass with `val_accuracy_mean`,
`val_accuracy_std` (sample standard deviation, None for a single seed) and `n`, for
tables and error bars. Pure functions of sweep.json's rows (`name`, `values` of the
swept fields, result fields); `sweeps.build_report` decides when a sweep has groups.
"""

import math
from typing import Any, Mapping, Sequence

SEED_FIELD = 'seed'
# Averaged over a group's seeds (checkpoint bytes too: orbax's files vary a little from
# run to run); every other field is kept where the seeds agree (params, MACs, epochs).
METRICS = ('val_accuracy', 'train_seconds', 'images_per_second', 'checkpoint_bytes')
_ROW_KEYS = ('name', 'overrides', 'values')


def other_fields(fields: Sequence[str]) -> list[str]:
  """The swept fields a group is defined by: all but `seed`."""
  return [f for f in fields if f != SEED_FIELD]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  """Mean and sample standard deviation (ddof 1; None below two values)."""
  if not values:
    return None, None
  mean = math.fsum(values) / len(values)
  if len(values) < 2:
    return mean, None
  return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def group_name(values: Mapping[str, Any]) -> str:
  """`field=value,...` of a group's fields, or 'all seeds' when only seed was swept."""
  return ','.join(f'{f}={v}' for f, v in values.items()) or 'all seeds'


def group_by_seed(rows: Sequence[Mapping[str, Any]], fields: Sequence[str],
                  metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
  """One row per combination of the swept fields other than `seed`, in first-seen order.

  Each has `name` (see `group_name`), `values` (without seed), `points` (its rows'
  names), `seeds`, `n`, and for each metric `<m>_mean`, `<m>_std` (over the rows where
  it is not None), plus the other fields that are equal in the whole group.
  """
  others = other_fields(fields)
  groups: dict[tuple, list[Mapping[str, Any]]] = {}
  for row in rows:
    groups.setdefault(tuple(repr(row['values'][f]) for f in others), []).append(row)
  grouped = []
  for members in groups.values():
    values = {f: members[0]['values'][f] for f in others}
    out: dict[str, Any] = {
        'name': group_name(values), 'values': values,
        'points': [m['name'] for m in members],
        'seeds': [m['values'].get(SEED_FIELD) for m in members],
        'n': len(members),
    }
    for metric in metrics:
      out[f'{metric}_mean'], out[f'{metric}_std'] = mean_std(
          [m[metric] for m in members if m.get(metric) is not None])
    for key in sorted(set(members[0]).difference(_ROW_KEYS, metrics)):
      if all(key in m and m[key] == members[0][key] for m in members):
        out[key] = members[0][key]
    grouped.append(out)
  return grouped
