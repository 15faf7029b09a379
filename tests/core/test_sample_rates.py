"""Every built-in system and offline metric group at every common sample rate.

The rates: 8, 11.025, 16, 22.05, 24, 32, 44.1 and 48 kHz. Signals are short synthetic harmonic
tones with a known F0 contour and an unvoiced gap, so each check has a known answer (the copy
system scores perfectly; WORLD tracks the contour).

Default tier: WORLD's encode/decode at every rate and option, and full runs of ``copy``,
``world`` and ``outputs:DIR`` over a corpus holding one utterance per rate, scored by the cheap
groups (f0, intrusive, spk) and by the model groups (dnsmos, asr) on a representative pair of
WORLD output at the lowest rate. The model groups' full sweep is marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import write_manifest

from resyn_bench.audio import Audio, resample
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_records

RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
CHEAP_GROUPS = "f0,intrusive,spk"
MODEL_GROUPS = "dnsmos,asr"


def tone(sr: int, f_scale: float = 1.0, dur: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonics (random fixed phases, all below 3.5 kHz so every rate holds them) on a
    rising contour, with a 150 ms unvoiced gap of faint noise in the middle."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur * sr)) / sr
    f = f_scale * (120.0 + 50.0 * t)
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum((1.0 / h) * (h * f < 3500) * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
            for h in range(1, 30))
    x = 0.3 * x / np.max(np.abs(x))
    gap = (t >= 0.3) & (t < 0.45)
    x[gap] = 1e-3 * rng.standard_normal(int(gap.sum()))
    return x.astype(np.float32)


def _f0(x: np.ndarray, sr: int) -> np.ndarray:
    import pyworld

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, frame_period=5.0)
    return pyworld.stonemask(x, f0, t, sr)


# ---- WORLD, system level -----------------------------------------------------------------

WORLD_OPTIONS = {"harvest": {}, "dio": {"f0_method": "dio"},
                 "dio-mcep40": {"f0_method": "dio", "mcep_dims": 40}}


# harvest (the default) runs at every rate in test_world_scores_at_every_rate; here the cheap
# options at every rate and harvest where the low-rate fix applies
CASES = [(sr, o) for sr in RATES for o in ("dio", "dio-mcep40")] + [(8000, "harvest"),
                                                                   (11025, "harvest")]


@pytest.mark.parametrize("sr,option", CASES)
def test_world_resynthesises_at_every_rate(sr, option):
    from resyn_bench.systems.world import WorldSystem

    system = WorldSystem(**WORLD_OPTIONS[option])
    x = tone(sr)
    out = system.resynthesize(Audio(x, sr), utterance=None)
    assert out.sample_rate == sr and len(out.samples) == len(x)
    assert np.all(np.isfinite(out.samples))
    f_in, f_out = _f0(x, sr), _f0(out.samples, sr)
    both = (f_in > 0) & (f_out > 0)
    # voiced where the input is voiced (below 15.8 kHz D4C alone used to make all of it noise)
    assert both.sum() >= 0.9 * (f_in > 0).sum()
    cents = np.abs(1200 * np.log2(f_out[both] / f_in[both]))
    assert np.median(cents) < 20, np.median(cents)


@pytest.mark.parametrize("sr", [8000, 11025])
def test_bandless_aperiodicity_is_rebuilt_exactly_from_f0(sr):
    """No coded band below 12 kHz: D4C's output then depends on F0 alone, and decoding it
    from F0 gives D4C's own values."""
    import pyworld

    from resyn_bench.systems.world import aperiodicity_bands, d4c_threshold, decode_bandless_aperiodicity

    assert aperiodicity_bands(pyworld, sr) == 0
    x = tone(sr).astype(np.float64)
    f0, t = pyworld.harvest(x, sr)
    fft_size = pyworld.get_cheaptrick_fft_size(sr, 71.0)
    ap = pyworld.d4c(x, f0, t, sr, fft_size=fft_size, threshold=d4c_threshold(sr))
    assert (f0 > 0).any() and (f0 == 0).any()
    np.testing.assert_allclose(decode_bandless_aperiodicity(f0, sr, fft_size), ap,
                               rtol=0, atol=1e-12)


def test_d4c_voicing_threshold_only_where_its_band_exists():
    from resyn_bench.systems.world import d4c_threshold

    assert [d4c_threshold(sr) for sr in RATES] == [0.0, 0.0] + [0.85] * 6


# ---- full runs: systems x groups at every rate ---------------------------------------------

def _corpus(tmp_path, rates, speakers=(("a", 1.0), ("b", 1.6)), name="corpus"):
    root = tmp_path / name
    root.mkdir()
    rows = []
    for i, sr in enumerate(rates):
        for spk, scale in speakers:
            uid = f"{spk}{sr}"
            sf.write(root / f"{uid}.wav", tone(sr, scale, dur=0.7, seed=i), sr, subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"{uid}.wav", "text": "hello"})
    return write_manifest(root, rows)


def _run(tsv, out, system, metrics, **kw):
    run(RunConfig(system=system, dataset="manifest", data_root=str(tsv), out=str(out),
                  metrics=metrics, f0_preset="dio", **kw), progress=False)
    records = {r["utt_id"]: r for r in read_records(out)}
    for uid, rec in records.items():
        assert rec["status"] == "ok", (system, uid, rec.get("reason"), rec.get("metric_failures"))
    return records


@pytest.fixture(scope="module")
def all_rates_corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("rates"), RATES)


def test_copy_scores_perfectly_at_every_rate(all_rates_corpus, tmp_path, home):
    records = _run(all_rates_corpus, tmp_path / "copy", "copy", CHEAP_GROUPS)
    assert len(records) == 2 * len(RATES)
    for uid, rec in records.items():
        m = rec["metrics"]
        assert m["f0.gpe"] == 0.0 and m["f0.vde"] == 0.0, uid
        assert m["intrusive.stoi"] > 0.999 and m["intrusive.pesq"] > 4.5, uid
        assert m["intrusive.mcd"] < 1e-6, uid
        assert m["spk.cos_ref"] > 0.999, uid


def test_world_scores_at_every_rate(all_rates_corpus, tmp_path, home):
    # spk is rate-checked by the copy run (its analysis sees the same 16 kHz signals)
    tsv = _corpus(tmp_path, RATES, speakers=(("a", 1.0),))
    records = _run(tsv, tmp_path / "world", "world", "f0,intrusive")
    assert len(records) == len(RATES)
    for uid, rec in records.items():
        m = rec["metrics"]
        assert m["f0.gpe"] < 0.05 and m["f0.vde"] < 0.1, (uid, m)
        assert m["intrusive.stoi"] > 0.5, (uid, m)


def test_outputs_at_another_rate_than_the_reference(all_rates_corpus, tmp_path, home):
    """Outputs written at a different rate from their reference (each utterance's output at
    the next rate of the list) are scored after both sides are brought to the group's rate."""
    outdir = tmp_path / "outs"
    outdir.mkdir()
    for i, sr in enumerate(RATES):
        other = RATES[(i + 1) % len(RATES)]
        for spk in ("a", "b"):
            x, _ = sf.read(all_rates_corpus.parent / f"{spk}{sr}.wav", dtype="float32")
            sf.write(outdir / f"{spk}{sr}.wav", resample(x, sr, other), other, subtype="FLOAT")
    records = _run(all_rates_corpus, tmp_path / "outs_run", f"outputs:{outdir}", "f0,intrusive")
    for uid, rec in records.items():
        assert rec["metrics"]["f0.gpe"] < 0.02, (uid, rec["metrics"])
        assert rec["metrics"]["intrusive.stoi"] > 0.9, (uid, rec["metrics"])


def test_model_groups_at_the_lowest_rate(tmp_path, home):
    """dnsmos and asr (model rate 16 kHz) on 8 kHz WORLD output: the representative case of
    the slow sweep below (model loading dominates its cost)."""
    tsv = _corpus(tmp_path, (8000,), speakers=(("a", 1.0),))
    records = _run(tsv, tmp_path / "run", "world", MODEL_GROUPS)
    for uid, rec in records.items():
        m = rec["metrics"]
        assert 1.0 <= m["dnsmos.ovrl"] <= 5.0, (uid, m)
        assert m["asr.wer"] is not None, (uid, m)


@pytest.mark.slow
@pytest.mark.parametrize("system", ["copy", "world"])
def test_model_groups_at_every_rate(system, all_rates_corpus, tmp_path, home):
    records = _run(all_rates_corpus, tmp_path / "run", system, MODEL_GROUPS)
    assert len(records) == 2 * len(RATES)
    for uid, rec in records.items():
        assert 1.0 <= rec["metrics"]["dnsmos.ovrl"] <= 5.0, uid
        assert rec["metrics"]["asr.wer"] is not None, uid
