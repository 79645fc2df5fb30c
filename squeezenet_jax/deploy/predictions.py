"""`--mode=predict`'s output: top-k classes with probabilities, as a table or JSON lines.

JSON lines (docs/interface.md): one object per image, `{"path": ..., "top": [{"class": ...,
"probability": ...}, ...]}` (most probable first), or `{"path": ..., "error": ...}`
for a file that could not be read.
"""

import json
from collections.abc import Sequence

import numpy as np

Top = list[tuple[str, float]]  # (class name, probability), most probable first


def softmax(logits: np.ndarray) -> np.ndarray:
  """Class probabilities of [N, classes] logits, computed in float64."""
  z = np.asarray(logits, np.float64)
  z = np.exp(z - z.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int, class_names: Sequence[str] | None = None) -> list[Top]:
  """The k most probable classes of each row of `logits` (k is capped at the classes).

  Classes without a name in `class_names` are named by their index.
  """
  probabilities = softmax(logits)
  num_classes = probabilities.shape[-1]
  names = list(class_names) if class_names is not None else []
  names += [str(i) for i in range(len(names), num_classes)]
  order = np.argsort(-probabilities, axis=-1, kind='stable')[:, :max(1, min(k, num_classes))]
  return [[(names[c], float(p[c])) for c in row] for row, p in zip(order, probabilities)]


def json_lines(names: Sequence[str], tops: Sequence[Top],
               errors: Sequence[tuple[str, str]] = ()) -> str:
  """One JSON object per line: each image's top classes, then each unreadable file."""
  lines = [json.dumps({'path': name,
                       'top': [{'class': c, 'probability': p} for c, p in top]})
           for name, top in zip(names, tops)]
  lines += [json.dumps({'path': name, 'error': error}) for name, error in errors]
  return '\n'.join(lines) + '\n' if lines else ''


def table(names: Sequence[str], tops: Sequence[Top],
          errors: Sequence[tuple[str, str]] = ()) -> str:
  """A readable table: one row per image with its top classes and their probabilities."""
  k = max((len(top) for top in tops), default=0)
  width = max([len('image'), *map(len, names), *(len(name) for name, _ in errors)])
  class_widths = [max(len(top[i][0]) for top in tops if i < len(top)) for i in range(k)]
  rows = [['image'.ljust(width),
           *(_ordinal(i).ljust(w + 7) for i, w in enumerate(class_widths))]]
  rows += [[name.ljust(width),
            *(f'{c.ljust(w)} {100 * p:5.1f}%' for (c, p), w in zip(top, class_widths))]
           for name, top in zip(names, tops)]
  rows += [[name.ljust(width), f'error: {error}'] for name, error in errors]
  return '\n'.join('  '.join(row).rstrip() for row in rows) + '\n'


def _ordinal(i: int) -> str:
  return {0: '1st', 1: '2nd', 2: '3rd'}.get(i, f'{i + 1}th')
