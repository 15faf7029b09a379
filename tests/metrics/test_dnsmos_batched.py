"""DNSMOS with its 9.01 s windows batched through onnxruntime equals speechmos' per-window loop."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("speechmos")
pytest.importorskip("onnxruntime")

from resyn_bench.metrics.quality import (  # noqa: E402
    DNSMOS_BATCH_TOLERANCE,
    DNSMOSMetrics,
    dnsmos_windows,
)


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    x = 0.3 * np.sign(np.sin(2 * np.pi * np.cumsum(f0) / 16000)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_windows_match_speechmos_tiling():
    # 3 s: tiled to 12 s -> windows at 0, 1, 2 s (int(12 - 9.01) + 1 = 3)
    w = dnsmos_windows(_clip(3.0), 16000)
    assert w.shape == (3, 144160)
    x = _clip(3.0)
    tiled = np.concatenate([x, x, x, x])
    np.testing.assert_array_equal(w[1], tiled[16000:16000 + 144160])
    # speechmos' window ends are float products: (7 + 9.01) * 16000 rounds down to one sample
    # short, and it skips such windows; so 20.5 s gives the windows at 0..6 s only
    assert dnsmos_windows(_clip(20.5), 16000).shape == (7, 144160)


@pytest.mark.parametrize("personalized", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_batch_8_equals_batch_1(personalized):
    one = DNSMOSMetrics(batch=1, personalized=personalized)
    x = _clip(20.5, seed=1)                # 7 windows
    a, _ = one.predict(x)
    for batch in (8, 3):                   # one batch of 7; batches of 3 + 3 + 1
        b, _ = DNSMOSMetrics(batch=batch, personalized=personalized).predict(x)
        assert a.keys() == b.keys()
        for k in a:
            assert abs(a[k] - b[k]) <= DNSMOS_BATCH_TOLERANCE, (batch, k, a[k], b[k])


def test_batch_1_is_speechmos_itself():
    from speechmos import dnsmos

    x = _clip(3.0, seed=3)
    ours, _ = DNSMOSMetrics(batch=1, num_threads=None).predict(x)
    theirs = dnsmos.run(x, sr=16000)
    for k, key in (("dnsmos.ovrl", "ovrl_mos"), ("dnsmos.sig", "sig_mos"),
                   ("dnsmos.bak", "bak_mos"), ("dnsmos.p808", "p808_mos")):
        assert ours[k] == pytest.approx(float(theirs[key]), abs=1e-5)


def test_batch_is_not_a_setting_and_is_checked():
    assert DNSMOSMetrics(batch=1).settings() == DNSMOSMetrics(batch=16).settings()
    with pytest.raises(ValueError, match="batch"):
        DNSMOSMetrics(batch=0)
