"""DNSMOS P.835 with the overlap of its windows computed once equals the whole model per window."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

pytest.importorskip("speechmos")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from resyn_bench.metrics.dnsmos_trunk import (  # noqa: E402
    SharedTrunkP835,
    TrunkSplitError,
    split_p835,
)
from resyn_bench.metrics.quality import (  # noqa: E402
    _DNSMOS_FILES,
    DNSMOS_BATCH_TOLERANCE,
    DNSMOSMetrics,
    _speechmos_dir,
    dnsmos_windows,
)


def _model_path(personalized: bool = False) -> str:
    import os

    return os.path.join(_speechmos_dir(), *_DNSMOS_FILES[personalized][0].split("/"))


def _session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return options


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """A gliding pulse train with syllable-rate amplitude, pauses and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.3 * t + seed)
    voiced = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / 16000))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t + seed), 0, None) ** 2
    return (0.3 * voiced * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _whole_model(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, _session_options(), providers=["CPUExecutionProvider"])


def test_the_split_finds_the_full_resolution_trunk():
    parts = split_p835(_model_path())
    assert parts.halo == 4            # four 3x3 convolutions before the first pooling
    assert parts.window == 144160     # 9.01 s at 16 kHz
    shared = SharedTrunkP835(_model_path(), _session_options(), ["CPUExecutionProvider"])
    assert shared.shift == 100        # 1 s between windows = 100 frames of 160 samples


@pytest.mark.parametrize("seconds,chunk", [(3.0, 2048), (20.5, 2048), (20.5, 37), (12.3, 901)])
def test_shared_trunk_equals_the_whole_model_on_every_window(seconds, chunk):
    path = _model_path()
    whole = _whole_model(path)
    shared = SharedTrunkP835(path, _session_options(), ["CPUExecutionProvider"])
    windows = dnsmos_windows(_speechlike(seconds, seed=int(seconds)), 16000)
    assert len(windows) >= 3
    expected = np.concatenate([whole.run(None, {"input_1": w[None]})[0] for w in windows])
    got = shared.run(windows, chunk=chunk)
    assert got.shape == expected.shape
    # measured: identical to the last bit (onnxruntime computes each output element the same
    # way whatever the input's length); the contract is the batching tolerance
    assert np.max(np.abs(got - expected)) <= 1e-6


def test_edge_frames_are_what_the_model_sees_not_the_neighbouring_audio():
    # negative control: a window cut from the whole clip's trunk with NO edge recomputation
    # differs from the model, so the edge step is doing real work
    path = _model_path()
    shared = SharedTrunkP835(path, _session_options(), ["CPUExecutionProvider"])
    windows = dnsmos_windows(_speechlike(12.0, seed=5), 16000)
    spec = shared.front.run(None, {shared.input_name: windows})[0][:, 0]
    frames, shift = spec.shape[1], shared.shift
    whole_spec = np.concatenate([spec[0]] + [spec[i, frames - shift:] for i in range(1, len(spec))])
    trunk = shared._trunk(whole_spec)
    naive = np.stack([trunk[:, i * shift: i * shift + frames] for i in range(len(spec))])
    naive_out = shared.head.run(None, {shared.parts.trunk_name: naive})[0]
    exact = shared.run(windows)
    assert np.max(np.abs(naive_out[1:-1] - exact[1:-1])) > 1e-4


@pytest.mark.parametrize("personalized", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_scores_equal_per_window_and_speechmos_loop(personalized):
    x = _speechlike(17.2, seed=2)
    shared, _ = DNSMOSMetrics(personalized=personalized).predict(x)
    per_window, _ = DNSMOSMetrics(personalized=personalized, overlap="per-window").predict(x)
    loop, _ = DNSMOSMetrics(personalized=personalized, batch=1).predict(x)
    for k in shared:
        assert abs(shared[k] - per_window[k]) <= DNSMOS_BATCH_TOLERANCE, k
        assert abs(shared[k] - loop[k]) <= DNSMOS_BATCH_TOLERANCE, k
    group = DNSMOSMetrics(personalized=personalized)
    group.load()
    assert group._model.p835_shared is not None


def test_batches_smaller_than_the_clip_still_share_within_each_batch():
    x = _speechlike(20.5, seed=4)                # 7 windows: batches of 3 + 3 + 1
    a, _ = DNSMOSMetrics(batch=3).predict(x)
    b, _ = DNSMOSMetrics(overlap="per-window").predict(x)
    for k in a:
        assert abs(a[k] - b[k]) <= DNSMOS_BATCH_TOLERANCE, k


def test_without_onnx_the_whole_model_runs_per_window(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx -> ImportError
    group = DNSMOSMetrics()
    with caplog.at_level(logging.WARNING, logger="resyn_bench.metrics"):
        group.load()
    assert group._model.p835_shared is None
    assert "per window" in caplog.text and "onnx" in caplog.text
    x = _speechlike(11.0, seed=6)
    a, _ = group.predict(x)
    monkeypatch.delitem(sys.modules, "onnx")
    b, _ = DNSMOSMetrics().predict(x)
    for k in a:
        assert abs(a[k] - b[k]) <= DNSMOS_BATCH_TOLERANCE, k


def test_a_graph_of_another_shape_is_refused(tmp_path):
    import onnx
    from onnx import helper

    model = onnx.load(_model_path())
    conv = next(n for n in model.graph.node if n.op_type == "Conv"
                and len(helper.get_attribute_value(
                    next(a for a in n.attribute if a.name == "kernel_shape"))) == 2)
    for a in conv.attribute:
        if a.name == "dilations":
            a.ints[:] = [2, 2]
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    with pytest.raises(TrunkSplitError, match="3x3/stride 1/pad 1"):
        split_p835(str(path))


def test_overlap_is_checked_and_is_not_a_setting():
    assert DNSMOSMetrics(overlap="shared").settings() == DNSMOSMetrics(overlap="per-window").settings()
    with pytest.raises(ValueError, match="overlap"):
        DNSMOSMetrics(overlap="sometimes")
