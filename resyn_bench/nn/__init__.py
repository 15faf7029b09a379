"""Pretrained speech networks shared by systems and metrics.

HuBERT (:mod:`.hubert`, also wav2vec 2.0's encoder), WavLM (:mod:`.wavlm`) and the wav2vec 2.0
CTC model (:mod:`.wav2vec2`): the unit encoders of ``resyn_bench.systems`` and the metric models
of ``resyn_bench.metrics`` (UTMOS, WavLM-ECAPA, phone CTC) build on them, so they sit below both
(metrics and systems do not import each other; ``tests/core/test_layering.py`` checks it). They
read checkpoints through :mod:`resyn_bench.safeload` and import nothing of systems, metrics or
reports.
"""
