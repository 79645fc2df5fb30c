"""A trained workdir as a JSON digest: checkpoint parameters, export files and scores.

Two versions of the code are behaviourally equal on a run when they give the same
digest for the same fixed-seed commands; `benchmarks/behaviour_check.sh` runs them.

  python -m benchmarks.fingerprint W [--out=FILE]
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

# Files whose bytes are not a function of the weights alone: orbax metadata carries
# timestamps, sizes.* carry wall times and paths.
_VOLATILE = ('_CHECKPOINT_METADATA', '_METADATA', 'manifest.ocdbt', 'sizes.png',
             '.commit.json', 'commit_success.txt')


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()[:16]


def _tree_digest(tree) -> str:
  leaves = []
  def visit(path, leaf):
    leaves.append((str(path), np.asarray(leaf)))
  import jax  # pylint: disable=g-import-not-at-top
  jax.tree_util.tree_map_with_path(visit, tree)
  h = hashlib.sha256()
  for path, leaf in sorted(leaves, key=lambda x: x[0]):
    h.update(path.encode())
    h.update(str(leaf.dtype).encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]


def _stablehlo_digest(path: Path) -> str:
  """The serialized module without its source locations (they hold this checkout's path)."""
  import jax  # pylint: disable=g-import-not-at-top
  text = jax.export.deserialize(bytearray(path.read_bytes())).mlir_module()
  text = re.sub(r'\s*loc\((?:[^()]|\([^()]*\))*\)', '', text)
  return _sha('\n'.join(l for l in text.splitlines() if not l.startswith('#loc')).encode())


def _as_numpy(path: Path) -> dict:
  """An orbax tree read back as numpy, whatever devices wrote it (no shardings needed)."""
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(str(path))
  tree = getattr(metadata, 'item_metadata', None) or getattr(metadata, 'tree', metadata)
  import jax  # pylint: disable=g-import-not-at-top
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(str(path), args=ocp.args.PyTreeRestore(restore_args=args))


def _checkpoint(step_dir: Path) -> str:
  return _tree_digest(_as_numpy(step_dir.resolve() / 'model'))


def fingerprint(workdir: str) -> dict:
  root = Path(workdir)
  digest = {'checkpoints': {}, 'exports': {}, 'scores': {}}
  for step in sorted((root / 'checkpoints').glob('[0-9]*')):
    digest['checkpoints'][step.name] = _checkpoint(step)
  for stage in sorted((root / 'compress').glob('*/checkpoints/[0-9]*')):
    digest['checkpoints'][f'{stage.parts[-3]}/{stage.name}'] = _checkpoint(stage)
  for fmt in sorted(p for p in (root / 'exports').glob('*') if p.is_dir()
                    and not p.name.startswith('.')):
    if (fmt / '_METADATA').exists() or (fmt / 'manifest.ocdbt').exists():
      digest['exports'][fmt.name] = {'params': _tree_digest(_as_numpy(fmt.resolve()))}
      continue
    digest['exports'][fmt.name] = {
        f.name: {'bytes': f.stat().st_size, 'sha256': _sha(f.read_bytes())}
        for f in sorted(fmt.rglob('*')) if f.is_file() and f.name not in _VOLATILE
        and f.suffix != '.jax_exported'}
    for f in fmt.glob('*.jax_exported'):
      digest['exports'][fmt.name][f.name] = {'module': _stablehlo_digest(f)}
  sizes = root / 'sizes.json'
  if sizes.exists():
    for row in json.loads(sizes.read_text())['formats']:
      # Orbax's files of the same weights differ in size from one save to the next.
      orbax = row['format'] in ('float32', 'bfloat16', 'int8')
      digest['scores'][row['format']] = {k: row.get(k) for k in ('accuracy', 'bytes')
                                         if not orbax or k == 'accuracy'}
  results = json.loads((root / 'results.json').read_text())
  digest['scores']['results'] = {k: results[k] for k in sorted(results)
                                 if k.endswith(('accuracy', 'loss', 'params'))}
  return digest


def main(argv: list[str]) -> None:
  args = [a for a in argv[1:] if not a.startswith('--out=')]
  out = [a.split('=', 1)[1] for a in argv[1:] if a.startswith('--out=')]
  text = json.dumps(fingerprint(args[0]), indent=1, sort_keys=True)
  if out:
    Path(out[0]).write_text(text + '\n')
  print(text)


if __name__ == '__main__':
  main(sys.argv)
