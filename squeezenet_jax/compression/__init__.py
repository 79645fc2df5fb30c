"""Every weight encoding, post-training and fine-tuned: one module per job.

quantize   the one int8/int4 encoder, k-means weight sharing, dequantisation
pruning    gradual magnitude pruning (Zhu & Gupta 2017), masks that keep zeros zero
sharing    trained weight sharing: fixed k-means codes, trainable centroids
qat        quantization-aware training to int8/int4 weights with qwix
entropy    ANS coding of symbol streams (constriction)
container  the compressed-model file: entropy-coded kernels, float vectors
plan       prepare -> a Stage (to_params / after_update / encode): what the trainer sees
"""
