"""What an ASR worker loads at start, made cheaper with the same results: the whisper-en text
normaliser without importing whisper (torch, numba); the cmudict parse."""
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
    from whisper.normalizers import EnglishTextNormalizer

    from resyn_bench.metrics.asr import TextNormalizer, keep_bracketed_words

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


def test_cmudict_parse_equals_the_regex_rule(tmp_path):
    import re

    from resyn_bench.metrics.phones import load_cmudict

    text = (";;; comment\nHELLO  HH AH0 L OW1\nHELLO(2)  HH EH0 L OW1\nREAD  R EH1 D # past\n"
            "ODD  AA1 D\u0663\nX\n\nTWO  T UW1\n")
    path = tmp_path / "dict"
    path.write_text(text, encoding="utf-8")
    want: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        parts = line.split()
        if len(parts) < 2 or line.startswith(";;;"):
            continue
        word = re.sub(r"\(\d+\)$", "", parts[0].lower())
        want.setdefault(word, tuple(re.sub(r"\d", "", p).upper() for p in parts[1:]))
    got = load_cmudict(path)
    assert got == want
    assert got["hello"] == ("HH", "AH", "L", "OW") and got["odd"] == ("AA", "D")  # Arabic-Indic 3 too
