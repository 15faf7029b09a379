"""The one bitrate formula (resyn_bench.core.bitrate): known answers from the paper, and every
site that states a bitrate computes it with it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from resyn_bench.core.bitrate import (
    F0_CODE_RATE,
    F0_CODE_VOCAB,
    bitrate_bps,
    bits_per_symbol,
    stream_bps,
)

REPO = Path(__file__).resolve().parents[2]


def _discrete(rate, vocab):
    return {"kind": "discrete", "frame_rate": rate, "vocab_size": vocab}


@pytest.mark.parametrize("rate,vocab,bps", [
    (50, 100, 350.0),     # HuBERT K=100, 50 Hz: the paper's 350 bps
    (100, 100, 700.0),    # CPC K=100, 100 Hz: 700 bps
    (100, 256, 800.0),    # VQ-VAE K=256, 100 Hz: 800 bps
    (50, 50, 300.0),      # HuBERT K=50: 300 bps (+ F0 = the paper's "365")
    (50, 200, 400.0),     # HuBERT K=200: 8 bits
    (12.5, 20, 62.5),     # F0 codes K'=20 at 12.5 Hz: 5 bits (the paper states 65 bps)
    (50, 1, 0.0),         # one symbol carries nothing
    (50, 2, 50.0),
    (50, 257, 450.0),
])
def test_stream_rate_known_answers(rate, vocab, bps):
    assert stream_bps(rate, vocab) == bps


def test_bits_per_symbol_and_bad_input():
    assert [bits_per_symbol(k) for k in (1, 2, 3, 4, 5, 100, 128, 129, 1000)] == \
        [0, 1, 2, 2, 3, 7, 7, 8, 10]
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="vocabulary size"):
            bits_per_symbol(bad)
    for bad in (0, -50, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="frame rate"):
            stream_bps(bad, 100)


def test_system_bitrate_counts_units_and_f0_codes_not_the_speaker():
    f0 = _discrete(F0_CODE_RATE, F0_CODE_VOCAB)
    assert F0_CODE_RATE == 16000 / 1280
    assert bitrate_bps([_discrete(50, 50), f0]) == 362.5
    speaker = {"kind": "speaker", "frame_rate": None, "vocab_size": 109}
    assert bitrate_bps([_discrete(50, 100), f0, speaker]) == 412.5
    assert bitrate_bps([speaker]) is None
    assert bitrate_bps([{"kind": "waveform", "frame_rate": 16000, "vocab_size": None}]) is None
    assert bitrate_bps([{"kind": "continuous", "frame_rate": 200, "vocab_size": None}]) is None
    assert bitrate_bps(None) is None and bitrate_bps([]) is None


def test_stream_spec_objects_and_manifest_dicts_give_the_same_rate():
    from resyn_bench.systems.base import StreamSpec

    specs = [StreamSpec("units", "discrete", 100.0, 100), StreamSpec("f0_codes", "discrete", 12.5, 20),
             StreamSpec("speaker", "speaker", None, 4)]
    dicts = [{"kind": s.kind, "frame_rate": s.frame_rate, "vocab_size": s.vocab_size} for s in specs]
    assert bitrate_bps(specs) == bitrate_bps(dicts) == 762.5


def test_every_site_uses_the_one_formula():
    from resyn_bench.metrics.bitrate import raw_bps
    from resyn_bench.named_systems import NAMED_SYSTEMS
    from resyn_bench.reports.collate import bitrate_bps as report_bitrate

    assert report_bitrate is bitrate_bps
    assert raw_bps(12.5, 20) == stream_bps(12.5, 20)
    expected = {"hubert100-vctk": 412.5, "cpc100-vctk": 762.5, "vqvae256-vctk": 862.5,
                "logmel100": 762.5, "hubert100-lj-pretrained": 350.0,
                "expresso-hubert500": 450.0, "mhubert1000-en-lj": 500.0}
    for name, bps in expected.items():
        ns = NAMED_SYSTEMS[name]
        assert ns.bitrate() == bitrate_bps(ns.streams()) == bps, name
    # no other module writes the formula out again
    pattern = re.compile(r"ceil\(\s*math\.log2|log2\([^)]*\)\s*\)?\s*\*\s*\w*rate")
    found = []
    for folder in ("resyn_bench", "systems", "metrics", "reports"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "bitrate.py" and path.parent.name == "core":
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                if pattern.search(line) and "n_fft" not in line:
                    found.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert not found, found
