"""The MetricGroup contract, checked on every registered metric group.

A group added to ``registry.METRIC_GROUPS`` is tested here without writing a line: the
parametrisation reads the registry. The contract (see ``metrics/base.py``):

* the constructor is cheap: it loads no model (reports and ``ls`` build groups too) - checked by
  constructing each group with an empty ``$RESYN_BENCH_HOME`` while its ``load()`` and every model
  loader of the backends the package uses fail loudly;
* ``settings()`` is JSON-serialisable (it goes into manifests and the analysis-cache key);
* ``analyse_reference()`` returns numpy arrays (or dicts of them): it is cached as ``.npz``;
* for additive groups (the default ``aggregate``: sum the counts, then ``pool``) pooling one
  utterance's counts gives back that utterance's values.

The analysis checks need the group's models; a group whose model is not installed/fetched here is
skipped with the reason (the fast groups always run).
"""
from __future__ import annotations

import importlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from resyn_bench import registry
from resyn_bench.audio import Audio
from resyn_bench.catalogue import CatalogueError
from resyn_bench.datasets import Utterance
from resyn_bench.metrics.base import MetricError, MetricGroup

GROUPS = sorted(registry.METRIC_GROUPS)

#: groups whose model load + analysis costs seconds of CPU: their analysis checks are slow-tier
HEAVY = {"asr", "phn", "utmos"}

#: model loaders of the backends the metric groups use: (module, attribute)
LOADERS = [
    ("torch", "load"), ("torch.jit", "load"),
    ("onnxruntime", "InferenceSession"),
    ("ctranslate2.models", "Whisper"),
    ("faster_whisper", "WhisperModel"),
    ("whisper", "load_model"),
    ("resemblyzer", "VoiceEncoder"),
    ("joblib", "load"),
]


def group_class(name: str) -> type[MetricGroup]:
    target = registry.METRIC_GROUPS[name].target
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class LoadedAModel(AssertionError):
    pass


def _refuse(what: str):
    def fail(*args, **kwargs):
        raise LoadedAModel(f"the constructor called {what}")
    return fail


def test_the_registry_lists_groups_to_check():
    assert {"f0", "asr", "spk", "dnsmos", "intrusive"} <= set(GROUPS)


@pytest.mark.parametrize("name", GROUPS)
def test_constructor_loads_no_model(name, monkeypatch, tmp_path):
    monkeypatch.setenv("RESYN_BENCH_HOME", str(tmp_path / "empty-home"))
    cls = group_class(name)
    monkeypatch.setattr(cls, "load", _refuse(f"{cls.__name__}.load()"))
    for module, attr in LOADERS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, attr):
            monkeypatch.setattr(mod, attr, _refuse(f"{module}.{attr}"))
    group = registry.make_metric(name)
    assert isinstance(group, MetricGroup) and group.name == name
    # the specs are declared without models too, and named after the group
    assert group.specs and all(s.key.startswith(f"{name}.") for s in group.specs)
    settings = group.settings()
    json.dumps(settings, allow_nan=False)  # raises on a non-JSON value


@pytest.mark.parametrize("name", GROUPS)
def test_settings_are_json_and_stable(name):
    group = registry.make_metric(name)
    first = group.settings()
    text = json.dumps(first, allow_nan=False, sort_keys=True)
    assert isinstance(first, dict)
    # the cache key is built from them: a second call gives the same JSON
    assert json.dumps(group.settings(), allow_nan=False, sort_keys=True) == text


def _speech_like(sr: int = 16000, seconds: float = 1.5) -> Audio:
    """A voiced, gliding harmonic tone with a pause: every analysis has something to find."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    x *= (np.sin(2 * np.pi * 2 * t) > -0.6)  # gaps: unvoiced stretches
    rng = np.random.default_rng(0)
    x = 0.3 * x / np.max(np.abs(x)) + 0.003 * rng.standard_normal(t.size)
    return Audio(x.astype(np.float32), sr)


UTT = Utterance("u1", "s1", Path("u1.wav"), text="the birch canoe slid on the smooth planks")


def _loaded(name: str) -> MetricGroup:
    group = registry.make_metric(name)
    try:
        group.load()
    except (MetricError, CatalogueError, FileNotFoundError, ImportError) as exc:
        pytest.skip(f"{name}: model not available here ({type(exc).__name__}: "
                    f"{str(exc)[:160]})")
    return group


def _at_rate(group: MetricGroup, audio: Audio) -> Audio:
    from resyn_bench.audio import resample

    if group.sample_rate is None or group.sample_rate == audio.sample_rate:
        return audio
    return Audio(resample(audio.samples, audio.sample_rate, group.sample_rate),
                 group.sample_rate)


def _is_arrays(analysis) -> bool:
    if isinstance(analysis, np.ndarray):
        return analysis.dtype != object
    if isinstance(analysis, dict):
        return all(isinstance(k, str) and _is_arrays(v) for k, v in analysis.items())
    return False


def _analysis_params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in GROUPS]


@pytest.mark.parametrize("name", _analysis_params())
def test_reference_analysis_is_arrays_and_pooling_one_utterance_gives_its_values(name):
    group = _loaded(name)
    try:
        audio = _at_rate(group, _speech_like())
        reference = group.analyse_reference(audio)
        assert isinstance(reference, dict), f"{name}: analyse_reference gave {type(reference)}"
        assert _is_arrays(reference), (
            f"{name}: analyse_reference must give numpy arrays (no object arrays) or dicts of "
            f"them, got {{k: type(v).__name__}} = "
            f"{ {k: type(v).__name__ for k, v in reference.items()} }")
        # survives the analysis cache's .npz round trip unchanged (no pickle allowed)
        flat = {k: v for k, v in reference.items() if isinstance(v, np.ndarray)}
        buf = io.BytesIO()
        np.savez(buf, **flat)
        buf.seek(0)
        with np.load(buf, allow_pickle=False) as back:
            for k, v in flat.items():
                assert back[k].dtype == v.dtype
                assert np.array_equal(back[k], v, equal_nan=v.dtype.kind in "fc")
        if type(group).aggregate is not MetricGroup.aggregate:
            return  # not additive: its own aggregate (e.g. EER over trials); nothing to pool
        if group.needs_corpus:
            group.fit_corpus([UTT], {"u1": reference})
        score = group.score(reference, audio, UTT)
        pooled = group.pool(dict(score.counts))
        spec_keys = {s.key for s in group.specs}
        assert set(pooled) <= spec_keys, f"{name}: pool() gave keys outside its specs"
        for key, value in pooled.items():
            mine = score.values.get(key)
            if value is None or mine is None:
                assert value is None and mine is None, (key, value, mine)
            else:
                assert math.isclose(value, mine, rel_tol=1e-9, abs_tol=1e-12), (key, value,
                                                                                 mine)
    finally:
        group.release()
