"""Data: sources (tfds, folders/archives, synthetic) loaded whole, then augmented on device.

  dataset.py   the splits a run asks for, validation held out of train  (load_dataset)
  sources.py   tfds / folder / synthetic, each giving whole splits as arrays
  archives.py  reading and decoding `<split>/<class>/<image>` directories and tars
  cache.py     the decoded-folder .npz cache
  augment.py   on-device crop/flip and normalisation, inside the compiled step
"""
