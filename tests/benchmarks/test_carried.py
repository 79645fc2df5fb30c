"""benchmarks/carried.txt against the code: every module the GPU run can import is in
the GPU machine's image (benchmarks/gpu_image.txt) or carried to it."""

import importlib.metadata
import re

import import_graph
from conftest import REPO_ROOT

# What the GPU run starts from: the device command's reproduce and the project's
# command line, followed through every import of the project's own modules.
ENTRY_POINTS = [REPO_ROOT / 'main.py', *sorted((REPO_ROOT / 'benchmarks').glob('*.py'))]
# Imported only on paths the GPU run never takes: neither in the image nor carried.
NOT_ON_THE_GPU_RUN = {
    'tensorflow_datasets': 'data.source=tfds; the GPU run reads the carried archive',
    'ray': '--sweep_launcher=ray',
    'qwix': '--mode=compress (quantization-aware training)',
    'constriction': '--mode=compress (the ANS coder), --mode=predict of a compress stage',
}
# Module -> distribution where they differ, for modules not installed here.
DISTRIBUTIONS = {'PIL': 'pillow', 'absl': 'absl-py', 'yaml': 'pyyaml',
                 'orbax': 'orbax-checkpoint', 'google': 'protobuf',
                 'ml_collections': 'ml-collections', 'adjustText': 'adjusttext'}


def _normalised(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


def _names(path) -> set[str]:
  lines = (line.split('#', 1)[0].strip() for line in path.read_text().splitlines())
  return {_normalised(re.match(r'[A-Za-z0-9_.-]+', line)[0]) for line in lines if line}


def _distributions(module: str) -> set[str]:
  installed = importlib.metadata.packages_distributions().get(module)
  return {_normalised(d) for d in installed or [DISTRIBUTIONS.get(module, module)]}


def test_every_module_the_gpu_run_imports_is_in_the_image_or_carried():
  image = _names(REPO_ROOT / 'benchmarks' / 'gpu_image.txt')
  carried = _names(REPO_ROOT / 'benchmarks' / 'carried.txt')
  needed = import_graph.third_party(ENTRY_POINTS, at_import=False)
  missing = {module: sorted(str(p.relative_to(REPO_ROOT)) for p in files)
             for module, files in needed.items()
             if module not in NOT_ON_THE_GPU_RUN and not _distributions(module) & (image | carried)}
  assert not missing, ('imported by the GPU run, but neither in benchmarks/gpu_image.txt nor '
                       f'in benchmarks/carried.txt: {missing}')
  # Each exception is still imported somewhere (no stale entries).
  assert set(NOT_ON_THE_GPU_RUN) <= set(needed)


# What `main.py --mode=train` imports before training: main.py imports these in
# functions, so the at-import graph of main.py alone stops short of them.
TRAIN_PATH = [REPO_ROOT / 'main.py', REPO_ROOT / 'squeezenet_jax' / 'validation.py',
              REPO_ROOT / 'squeezenet_jax' / 'training' / 'loop.py',
              REPO_ROOT / 'squeezenet_jax' / 'runtime.py', REPO_ROOT / 'squeezenet_jax' / 'host.py']


def test_training_imports_none_of_the_modules_off_the_gpu_run():
  needed = import_graph.third_party(TRAIN_PATH, at_import=True)
  assert not set(needed) & set(NOT_ON_THE_GPU_RUN), {
      module: sorted(str(p.relative_to(REPO_ROOT)) for p in needed[module])
      for module in set(needed) & set(NOT_ON_THE_GPU_RUN)}


def test_the_carried_wheels_are_pinned_and_not_in_the_image():
  """One version of each, so prepare_offline.sh fetches exactly what was tested; none
  of the image's own, except flax, carried for images whose flax cannot import nnx."""
  lines = [line.split('#', 1)[0].strip()
           for line in (REPO_ROOT / 'benchmarks' / 'carried.txt').read_text().splitlines()]
  pins = [line for line in lines if line]
  assert pins and all(re.fullmatch(r'[A-Za-z0-9_.-]+==[0-9][0-9a-z.]*', p) for p in pins), pins
  image = _names(REPO_ROOT / 'benchmarks' / 'gpu_image.txt')
  assert {_normalised(p.split('==')[0]) for p in pins} & image == {'flax'}
