"""Codec2 and Opus as systems: round trips, measured bitrates, and their way into the reports."""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from conftest import harmonic_signal

from resyn_bench.audio import Audio
from resyn_bench.registry import make_system
from resyn_bench.reports.collate import measured_bitrate, run_bitrate, summarize_run
from resyn_bench.systems.base import bitstream_record, transmit

pytest.importorskip("pycodec2")
pytest.importorskip("av")


def _signal(sr: int, seconds: float = 2.0) -> Audio:
    import soxr

    x = np.tile(harmonic_signal(), int(np.ceil(seconds / 1.5)))[:int(16000 * seconds)]
    if sr != 16000:
        x = soxr.resample(x, 16000, sr)
    return Audio(np.ascontiguousarray(x, dtype=np.float32), sr)


@pytest.mark.parametrize("mode,nominal", [("3200", 3200), ("2400", 2400), ("1600", 1600),
                                          ("1300", 1300), ("1200", 1200), ("700C", 700)])
def test_codec2_round_trip_and_measured_rate(mode, nominal):
    system = make_system("codec2", mode=mode)
    audio = _signal(8000, 2.0)   # 2 s: a whole number of 20 and 40 ms frames
    out, bits = transmit(system, audio, None)
    assert out.sample_rate == 8000 and len(out.samples) == len(audio.samples)
    assert np.all(np.isfinite(out.samples)) and np.abs(out.samples).max() > 0.01
    assert bits["source"] == "measured" and bits["bps"] == pytest.approx(nominal)
    assert bits["seconds"] == pytest.approx(2.0)
    # a length that is not whole frames: the padded last frame is counted, within one frame
    short = Audio(audio.samples[:12345], 8000)
    out, bits = transmit(system, short, None)
    assert len(out.samples) == 12345
    assert nominal <= bits["bps"] <= nominal * (1 + 0.04 / (12345 / 8000))


def test_codec2_bad_mode_and_rate():
    with pytest.raises(ValueError, match="mode must be one of"):
        make_system("codec2", mode=4800)
    from resyn_bench.systems.base import SystemFailure

    with pytest.raises(SystemFailure, match="8000 Hz"):
        make_system("codec2").encode(_signal(16000, 0.5), None)


@pytest.mark.parametrize("nominal", [6000, 9000, 12000, 16000, 24000])
def test_opus_cbr_round_trip_measured_rate_near_nominal(nominal):
    system = make_system("opus", bitrate=nominal, vbr="off")
    audio = _signal(16000, 2.0)
    out, bits = transmit(system, audio, None)
    assert out.sample_rate == 16000 and len(out.samples) == len(audio.samples)
    # constant bitrate: the packets' sizes give the nominal rate (plus the flush packet)
    assert bits["bps"] == pytest.approx(nominal, rel=0.05)
    assert bits["packets"] >= 100 and bits["nominal_bps"] == nominal


def test_opus_vbr_is_measured_and_output_aligned():
    audio = _signal(16000, 2.0)
    out, bits = transmit(make_system("opus", bitrate=24000), audio, None)
    # VBR (the default, as the paper): the achieved rate follows the signal, near the target
    assert 0.5 * 24000 < bits["bps"] < 1.5 * 24000 and bits["vbr"] == "on"
    # decoded, pre-skip removed and back at 16 kHz: the waveform lines up with the input
    assert np.corrcoef(out.samples, audio.samples)[0, 1] > 0.8
    high, _ = transmit(make_system("opus", bitrate=64000, application="audio"), audio, None)
    assert np.corrcoef(high.samples, audio.samples)[0, 1] > 0.99


def test_opus_bad_options():
    with pytest.raises(ValueError, match="vbr"):
        make_system("opus", vbr="maybe")
    with pytest.raises(ValueError, match="bitrate"):
        make_system("opus", bitrate=100)


def test_missing_library_says_how_to_install(monkeypatch):
    from resyn_bench.systems import codecs

    monkeypatch.setitem(sys.modules, "pycodec2", None)
    with pytest.raises(ImportError, match=r"pip install pycodec2"):
        codecs.Codec2System()
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install av .*resyn-bench\[codecs\]"):
        codecs.OpusSystem()


def test_measured_bitrate_pools_bits_over_seconds_and_takes_precedence():
    records = [{"bitstream": bitstream_record(1000, 1.0)}, {"bitstream": bitstream_record(5000, 4.0)},
               {"bitstream": {"bits": "x", "seconds": 1}}, {}]
    bps, source, info = measured_bitrate(records)
    assert bps == pytest.approx(6000 / 5.0) and source == "measured" and info["n_utterances"] == 2
    manifest = {"system": {"streams": [{"kind": "discrete", "frame_rate": 50, "vocab_size": 100}]}}
    assert run_bitrate(manifest, records) == (pytest.approx(1200.0), "measured")
    assert run_bitrate(manifest, [{}]) == (350.0, "streams")
    declared = [{"bitstream": bitstream_record(800, 1.0, "declared")}]
    assert run_bitrate({}, declared) == (800.0, "declared")
    assert measured_bitrate([{}]) is None
    with pytest.raises(ValueError):
        bitstream_record(10, 0.0)


def test_codec_runs_give_measured_rows_in_table_codec(tiny_corpus, tmp_path, home):
    from resyn_bench.reports.report import write_report
    from resyn_bench.runner import RunConfig, run

    runs = []
    for system, options in (("copy", {}), ("codec2", {"mode": 1600}), ("opus", {"bitrate": 9000})):
        out = tmp_path / system
        run(RunConfig(system=system, dataset="manifest", data_root=str(tiny_corpus), out=str(out),
                      metrics="pitch", f0_preset="dio", system_options=options,
                      experiment="resynthesis" if system == "copy" else "codec"), progress=False)
        runs.append(out)
    records = [json.loads(line) for line in (tmp_path / "opus" / "records.jsonl").read_text().splitlines()]
    synth = [r for r in records if r.get("part", "synthesis") == "synthesis"]
    assert len(synth) == 6 and all(r["bitstream"]["source"] == "measured" for r in synth)
    s = summarize_run(tmp_path / "codec2")
    assert s.bitrate_source == "measured" and s.bitrate == pytest.approx(1600, rel=0.03)
    paths = write_report(runs, tmp_path / "rep", formats=["md", "csv"], plots=False, n_boot=50)
    rows = list(csv.DictReader(open(tmp_path / "rep" / "table_codec.csv", encoding="utf-8")))
    rates = {r["system"]: r["bitrate"] for r in rows}
    assert float(rates["codec2 (mode=1600)"]) == pytest.approx(1600, rel=0.03)
    assert 3000 < float(rates["opus (bitrate=9000)"]) < 15000
    md = (tmp_path / "rep" / "table_codec.md").read_text(encoding="utf-8")
    assert "measured from the encoder" in md and "opus (bitrate=9000)" in md
    assert paths
