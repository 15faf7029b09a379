"""Unit encoders: dense speech features (``features``: log-mel, HuBERT, CPC) quantized into
discrete units by k-means (``kmeans``), put together by ``base.load_unit_encoder``.

Import the sub-modules directly (``from resyn_bench.systems.encoders.base import
load_unit_encoder``); this package imports nothing heavy on its own.
"""
