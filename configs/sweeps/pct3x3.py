"""Share of 3x3 expand filters from 1% to 99%: the paper's Figure 2(b)."""

from configs.sweeps import paper_design_space
from squeezenet_jax.config_utils import product


def get_config():
  return paper_design_space(squeeze_ratio=0.5)  # the paper fixes SR at 0.5 for this figure


def get_sweep():
  return product({'model.pct3x3': (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)})
