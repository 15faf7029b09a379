"""Pitch extraction and its names table (resyn_bench.dsp.pitch, resyn_bench.dsp.presets)."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import DUR, SEGMENTS, SR, contour, harmonic_signal  # noqa: E402,F401

from resyn_bench.core.errors import MetricError
from resyn_bench.dsp.pitch import PRESETS, F0Track, PitchPreset, extract_f0, get_preset, yin_frames


def frame_centres(track: F0Track, preset: PitchPreset) -> np.ndarray:
    """yin-fairseq stamps frames by their start; the others by their centre."""
    if preset.extractor == "yin":
        return track.times + preset.params["w_len"] / 2 / SR
    return track.times


def interior_masks(t: np.ndarray, margin: float = 0.03):
    truth = contour(t)
    before, after = contour(t - margin), contour(t + margin)
    voiced = (truth > 0) & (before > 0) & (after > 0)
    unvoiced = (truth == 0) & (before == 0) & (after == 0)
    return truth, voiced, unvoiced


@pytest.fixture(scope="module")
def glide() -> np.ndarray:
    return harmonic_signal()


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

def test_preset_names_and_dicts():
    assert set(PRESETS) == {"harvest", "dio", "yaapt", "yin-fairseq"}
    for name, p in PRESETS.items():
        assert p.name == name
        d = p.to_dict()
        assert d["name"] == name and d["extractor"] == p.extractor
        json.dumps(d)  # JSON-able for the manifest
    assert "stonemask" in PRESETS["dio"].description
    y = PRESETS["yaapt"].params
    assert (y["frame_length"], y["frame_space"], y["nccf_thresh1"], y["tda_frame_length"]) == \
        (20.0, 5.0, 0.25, 25.0)
    assert PRESETS["yin-fairseq"].params == {"w_len": 512, "w_step": 256, "f0_min": 100.0,
                                             "f0_max": 500.0, "harmo_thresh": 0.1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["dio"].name = "x"  # frozen
    with pytest.raises(TypeError):
        PRESETS["dio"].params["f0_floor"] = 10.0  # read-only parameters
    custom = PitchPreset("dio-70", "dio", {"f0_floor": 70.0, "f0_ceil": 400.0,
                                           "frame_period": 10.0})
    assert json.loads(json.dumps(custom.to_dict()))["params"]["frame_period"] == 10.0


def test_get_preset_suggests():
    assert get_preset("harvest") is PRESETS["harvest"]
    assert get_preset(PRESETS["dio"]) is PRESETS["dio"]
    with pytest.raises(KeyError) as err:
        get_preset("yapt")
    msg = str(err.value)
    assert "did you mean 'yaapt'" in msg
    for name in PRESETS:
        assert name in msg
    with pytest.raises(KeyError):
        get_preset("zzzz")


# --------------------------------------------------------------------------------------------
# Every preset recovers a known contour
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_recovers_contour(name, glide):
    preset = PRESETS[name]
    track = extract_f0(glide, SR, name)
    assert track.times.dtype == np.float64 and track.f0.dtype == np.float64
    assert np.all(np.diff(track.times) > 0)
    truth, v_in, u_in = interior_masks(frame_centres(track, preset))
    assert v_in.sum() > 15 and u_in.sum() > 5
    # voicing right in the interior of voiced and unvoiced regions
    assert track.voiced[v_in].mean() >= 0.95
    assert (~track.voiced[u_in]).mean() >= 0.95
    ok = v_in & track.voiced
    rel = np.abs(track.f0[ok] / truth[ok] - 1)
    # yaapt's median error is ~1 %: pYAAPT 1.0.12 reports fs/(lag+1) (one-lag low bias)
    assert np.median(rel) < 0.03
    assert np.mean(rel > 0.2) < 0.05


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_time_stamps_locate_a_pitch_step(name):
    """A 150 -> 250 Hz step at 0.5 s is seen at 0.5 s: checks each time-stamp convention."""
    rng = np.random.default_rng(3)
    t = np.arange(SR) / SR
    f = np.where(t < 0.5, 150.0, 250.0)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum((1 / h) * np.sin(h * phase + rng.uniform(0, 6.28)) for h in range(1, 12))
    preset = PRESETS[name]
    track = extract_f0(0.3 * x / np.max(np.abs(x)), SR, name)
    centres = frame_centres(track, preset)
    high = (track.f0 > 200) & (centres > 0.1)
    step_at = centres[np.argmax(high)]
    tol = 0.02 if preset.extractor != "yin" else 0.5 * 256 / SR + 0.02
    assert abs(step_at - 0.5) <= tol, step_at


def test_yaapt_frame_times():
    """pYAAPT frames are centred at k * 5 ms of the unpadded signal; ceil(n / 80) frames."""
    for n in (1600, 1601, 1679, 4000):
        track = extract_f0(np.random.default_rng(n).standard_normal(n) * 0.1, SR, "yaapt")
        assert len(track) == math.ceil(n / 80)
        np.testing.assert_allclose(track.times, np.arange(len(track)) * 0.005, atol=1e-12)


def test_pyworld_frame_times():
    for name in ("harvest", "dio"):
        track = extract_f0(np.zeros(1600, np.float32) + 1e-3, SR, name)
        np.testing.assert_allclose(track.times, np.arange(len(track)) * 0.005, atol=1e-12)
        assert len(track) == 1600 // 80 + 1
    custom = PitchPreset("dio-10ms", "dio", {"f0_floor": 70.0, "f0_ceil": 400.0,
                                             "frame_period": 10.0})
    track = extract_f0(np.zeros(1600, np.float32) + 1e-3, SR, custom)
    np.testing.assert_allclose(track.times, np.arange(len(track)) * 0.010, atol=1e-12)


def test_yin_frame_times():
    """fairseq frames: starts range(0, len - 512, 256), stamped with the start."""
    for n in (513, 768, 769, 1600):
        track = extract_f0(np.random.default_rng(n).standard_normal(n), SR, "yin-fairseq")
        starts = np.arange(0, n - 512, 256)
        np.testing.assert_array_equal(track.times, starts / SR)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_silence_is_unvoiced(name):
    track = extract_f0(np.zeros(SR // 2, np.float32), SR, name)
    assert len(track) > 0 and not track.voiced.any()


# --------------------------------------------------------------------------------------------
# Failures become MetricError
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_bad_inputs_raise_metric_error(name):
    with pytest.raises(MetricError, match="empty"):
        extract_f0(np.zeros(0), SR, name)
    with pytest.raises(MetricError, match="NaN"):
        extract_f0(np.array([0.0, np.nan] * 800), SR, name)
    with pytest.raises(MetricError, match="1-D"):
        extract_f0(np.zeros((2, 800)), SR, name)


def test_too_short_raises_metric_error():
    # pYAAPT crashes (IndexError / ValueError) below 4 analysis frames (< ~15 ms at 16 kHz)
    with pytest.raises(MetricError, match="yaapt"):
        extract_f0(np.random.default_rng(0).standard_normal(200), SR, "yaapt")
    assert len(extract_f0(np.random.default_rng(0).standard_normal(241), SR, "yaapt")) == 4
    # fairseq YIN needs len > w_len to produce a single frame
    with pytest.raises(MetricError, match="too short"):
        extract_f0(np.ones(512), SR, "yin-fairseq")


# --------------------------------------------------------------------------------------------
# YIN: vectorised implementation == textbook per-frame loop
# --------------------------------------------------------------------------------------------

def textbook_yin(sig, sr, w_len=512, w_step=256, f0_min=100.0, f0_max=500.0, thresh=0.1):
    """De Cheveigne & Kawahara YIN steps 1-4 as in fairseq's compute_yin, one frame at a time,
    with the difference function summed directly (no FFT)."""
    tau_min, tau_max = int(sr / f0_max), int(sr / f0_min)
    f0s = []
    for start in range(0, len(sig) - w_len, w_step):
        x = np.asarray(sig[start:start + w_len], dtype=np.float64)
        d = np.zeros(tau_max)
        for tau in range(1, tau_max):
            d[tau] = np.sum((x[:w_len - tau] - x[tau:]) ** 2)
        cmnd = np.ones(tau_max)
        running = 0.0
        for tau in range(1, tau_max):
            running += d[tau]
            cmnd[tau] = d[tau] * tau / running if running > 0 else np.nan
        f0 = 0.0
        tau = tau_min
        while tau < tau_max:
            if cmnd[tau] < thresh:
                while tau + 1 < tau_max and cmnd[tau + 1] < cmnd[tau]:
                    tau += 1
                f0 = sr / tau
                break
            tau += 1
        f0s.append(f0)
    return np.array(f0s)


def _yin_test_signals():
    rng = np.random.default_rng(7)
    n = SR  # 1 s
    t = np.arange(n) / SR
    sigs = [rng.standard_normal(n).astype(np.float32)]  # white noise
    # random periodic waveforms (one random cycle tiled) with noise: voiced at random F0s
    for period in (37, 53, 80, 121, 158):
        cycle = rng.standard_normal(period)
        sigs.append(np.tile(cycle, n // period + 1)[:n] + 0.3 * rng.standard_normal(n))
    # harmonic glides with vibrato and onsets
    for _ in range(3):
        f = rng.uniform(110, 380) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        ph = 2 * np.pi * np.cumsum(f) / SR
        x = sum(np.sin(h * ph + rng.uniform(0, 6.28)) / h for h in range(1, 10))
        sigs.append((x * (t > rng.uniform(0.1, 0.5)) + 0.02 * rng.standard_normal(n))
                    .astype(np.float32))
    sigs.append(harmonic_signal(seed=11))
    sigs.append(harmonic_signal(seed=12, mult=1.7))
    return sigs


def test_yin_vectorised_matches_textbook_loop():
    n_voiced = n_total = 0
    for sig in _yin_test_signals():
        _, f0, _ = yin_frames(sig, SR)
        ref = textbook_yin(sig, SR)
        np.testing.assert_array_equal(f0, ref)
        n_voiced += int(np.count_nonzero(ref))
        n_total += ref.size
    assert 0.3 * n_total < n_voiced < n_total  # both decisions were exercised


def test_yin_other_rate_matches_textbook_loop():
    sig = _yin_test_signals()[3]
    for sr in (22050, 24000):
        _, f0, _ = yin_frames(sig, sr)
        np.testing.assert_array_equal(f0, textbook_yin(sig, sr))


def test_extract_f0_accepts_float32_and_int_like_inputs(glide):
    a = extract_f0(glide, SR, "dio")
    b = extract_f0(glide.astype(np.float64)[::1], SR, PRESETS["dio"])
    np.testing.assert_array_equal(a.f0, b.f0)
    # non-contiguous input is copied to C-contiguous float64 (pyworld needs it)
    wide = np.repeat(glide[:, None], 2, axis=1)[:, 0]
    assert not wide.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(extract_f0(wide, SR, "dio").f0, a.f0)


# --------------------------------------------------------------------------------------------
# One vocabulary: --f0-preset, --f0-extractor, -o f0_extractor= and the training config
# --------------------------------------------------------------------------------------------

def test_every_f0_option_reads_the_one_names_table():
    import argparse

    from resyn_bench.cli.train import _f0_extractor
    from resyn_bench.dsp.presets import preset_names, training_names
    from resyn_bench.metrics.f0 import F0Metrics
    from resyn_bench.systems.vocoder.config import F0_EXTRACTORS, ConfigError, load_config
    from resyn_bench.systems.vocoder.data import F0_METHODS, DataError, f0_method_params

    names = preset_names()
    assert set(PRESETS) < set(names) and "pyworld" in names and len(set(names)) == len(names)
    for name in names:                                  # --f0-preset / -m f0.preset=
        assert F0Metrics(preset=name).preset is get_preset(name)
    usable = training_names()
    assert list(F0_EXTRACTORS) == list(F0_METHODS) == usable
    assert set(usable) == set(names) - {"yin-fairseq"}   # the one preset without a 5 ms hop
    for name in usable:                                 # --f0-extractor, -o f0_extractor=, --set
        assert _f0_extractor(name) == name
        assert f0_method_params(name)["hop_s"] == 0.005
        assert load_config("tiny", [f"f0_extractor={name}"]).f0_extractor == name

    # an unknown name gets the same suggestion from every option
    with pytest.raises(KeyError, match="did you mean 'pyworld'"):
        F0Metrics(preset="pywrld")
    with pytest.raises(argparse.ArgumentTypeError, match="did you mean 'pyworld'"):
        _f0_extractor("pywrld")
    with pytest.raises(DataError, match="did you mean 'pyworld'"):
        f0_method_params("pywrld")                      # what -o f0_extractor= runs first
    with pytest.raises(ConfigError, match="did you mean 'pyworld'"):
        load_config("tiny", ["f0_extractor=pywrld"])
    # a known name that cannot drive training says why, and what can
    with pytest.raises(DataError, match="16 ms.*5 ms: use one of yaapt"):
        f0_method_params("yin-fairseq")


def test_training_names_keep_their_meaning():
    """The training extractors' presets are the ones checkpoints were trained with (their
    parameters are in the F0 cache keys): pyworld = dio and harvest = Harvest over 60-400 Hz,
    5 ms; yaapt = the reference settings, the metric preset of the same name."""
    from resyn_bench.systems.vocoder.data import f0_method_params

    world = {"f0_floor": 60.0, "f0_ceil": 400.0, "frame_period": 5.0}
    assert f0_method_params("pyworld") == {
        "name": "pyworld-dio-60-400", "extractor": "dio", "params": world, "hop_s": 0.005,
        "description": "dio + stonemask (pyworld), 60-400 Hz, 5 ms"}
    assert f0_method_params("harvest") == {
        "name": "pyworld-harvest-60-400", "extractor": "harvest", "params": world,
        "hop_s": 0.005, "description": "harvest (pyworld), 60-400 Hz, 5 ms"}
    assert f0_method_params("yaapt") == PRESETS["yaapt"].to_dict()
    # the metrics' harvest is the 50-800 Hz preset, as before
    assert get_preset("harvest").params["f0_floor"] == 50.0


def test_train_cli_refuses_an_unknown_extractor_with_a_suggestion(capsys):
    from resyn_bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "vocoder", "--config", "tiny", "--out", "unused", "--f0-extractor",
              "yapt"])
    assert info.value.code == 2
    assert "did you mean 'yaapt'" in capsys.readouterr().err
