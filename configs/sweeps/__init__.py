"""Sweep configs for `--mode=sweep`: each defines `get_config()` and `get_sweep()`."""

from configs import default


def paper_design_space(**model_fields):
  """SqueezeNet 1.0 with the paper's section-5 metaparameters, then `model_fields`.

  The base of the design-space sweeps (Figure 2): base_e=128, incr_e=128, freq=2,
  pct3x3=0.5, squeeze_ratio=0.125 (also the defaults, spelled out so they stay fixed).
  """
  config = default.get_config()
  config.model.version = '1.0'
  config.model.update({'base_e': 128, 'incr_e': 128, 'freq': 2, 'pct3x3': 0.5,
                       'squeeze_ratio': 0.125, **model_fields})
  return config
