"""The modes of `main.py` other than training (which is `training.loop`).

  evaluate.py  --mode=eval     score a run's checkpoint on one split
  export.py    --mode=export   inference exports re-scored from disk, sizes report
  export_deploy.py             its ONNX (float32, int8) and StableHLO files
  predict.py   --mode=predict  top-k classes of image files
  summary.py   --mode=summary  per-layer parameter/MAC table
  sweep.py     --mode=sweep    a grid of runs and their comparison
"""
