import numpy as np
import pytest
import soundfile as sf

from resyn_bench.audio import (
    Audio,
    AudioError,
    ResampleLog,
    ensure_rate,
    load_audio,
    resample,
    validate,
    write_audio,
)


def test_stereo_is_mixed_to_mono_and_flac_reads(tmp_path):
    left = np.full(1600, 0.5, np.float32)
    right = np.full(1600, -0.1, np.float32)
    sf.write(tmp_path / "s.flac", np.stack([left, right], 1), 16000)
    a = load_audio(tmp_path / "s.flac")
    assert a.sample_rate == 16000 and a.samples.shape == (1600,)
    np.testing.assert_allclose(a.samples, 0.2, atol=1e-4)


@pytest.mark.parametrize("samples, kind", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros(8000, np.float32), "silent"),
    (np.full(800, 0.5, np.float32), "too_short"),
    (np.array([0.1, np.inf] * 2000, np.float32), "non_finite"),
])
def test_validate_names_the_problem(samples, kind):
    with pytest.raises(AudioError) as err:
        validate(Audio(samples, 16000))
    assert err.value.kind == kind


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "nope.wav")
    assert err.value.kind == "missing"
    (tmp_path / "bad.wav").write_bytes(b"junk" * 100)
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "bad.wav")
    assert err.value.kind == "unreadable"


def test_resample_preserves_a_tone_and_is_logged():
    sr = 48000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    log = ResampleLog()
    y = ensure_rate(Audio(x, sr), 16000, purpose="test", log=log)
    assert y.sample_rate == 16000 and len(y.samples) == 16000
    spectrum = np.abs(np.fft.rfft(y.samples))
    assert abs(np.argmax(spectrum) - 440) <= 1   # 1 Hz bins
    assert log.counts == {"test: 48000 Hz -> 16000 Hz": 1}
    assert ensure_rate(y, 16000, purpose="test", log=log) is y
    assert resample(x, sr, sr) is x


def test_write_audio_is_atomic_and_clips(tmp_path):
    write_audio(tmp_path / "o" / "x.wav", Audio(np.array([0.0, 2.0, -2.0] * 100, np.float32), 8000))
    back = load_audio(tmp_path / "o" / "x.wav")
    assert back.sample_rate == 8000 and np.max(np.abs(back.samples)) <= 1.0
    assert not list((tmp_path / "o").glob(".*"))
