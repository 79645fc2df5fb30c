"""Deployment: a trained model outside the trainer (ONNX, StableHLO, image files).

  inference.py         BatchNorm folded into the convs; the uint8-in, logits-out function
  onnx_export.py       that function as ONNX (jax2onnx) float32 and int8 (ONNX Runtime)
  stablehlo_export.py  that function as a jax.export artifact, weights inside
  images.py            image files, folders and archives to classify, any size
  predictions.py       top-k classes, as a table or JSON lines
"""
