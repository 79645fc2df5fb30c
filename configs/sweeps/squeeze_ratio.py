"""Squeeze ratio from 0.125 to 1: the paper's Figure 2(a), size against accuracy."""

from configs.sweeps import paper_design_space
from squeezenet_jax.config_utils import product


def get_config():
  return paper_design_space()


def get_sweep():
  return product({'model.squeeze_ratio': (0.125, 0.25, 0.5, 0.75, 1.0)})
