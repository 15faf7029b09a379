"""The whisper-en text normaliser loads without importing whisper (torch, numba): same output."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("whisper")
pytest.importorskip("regex")

SAMPLES = ["Mr. Smith paid $20 million in 1960s!", "One oh one, twenty-first (of May).",
           "It's the colour of   Dr Brown's  car", "Hmm, uh, we're gonna win 3rd place...",
           "Six spoons of fresh snow peas, five thick slabs of blue cheese.", ""]


def test_same_text_as_whisper_normaliser():
    from resyn_bench.metrics.asr import TextNormalizer, keep_bracketed_words
    from whisper.normalizers import EnglishTextNormalizer

    ours = TextNormalizer("whisper-en")
    theirs = EnglishTextNormalizer()
    for text in SAMPLES:
        assert ours(text) == " ".join(theirs(keep_bracketed_words(text)).split())


def test_loading_it_does_not_import_torch_or_whisper():
    code = ("import sys\n"
            "from resyn_bench.metrics.asr import TextNormalizer\n"
            "n = TextNormalizer('whisper-en')\n"
            "assert n('Twenty-one Dollars') == '$21', n('Twenty-one Dollars')\n"
            "print(sorted(m for m in ('torch', 'whisper', 'numba') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_whisper_already_imported_uses_its_class():
    import whisper.normalizers
    from resyn_bench.metrics.asr import whisper_english_normalizer_class

    assert whisper_english_normalizer_class() is whisper.normalizers.EnglishTextNormalizer
