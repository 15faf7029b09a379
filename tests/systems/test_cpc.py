"""In-house CPC against an independent computation: F.conv1d + the channel-norm formula + the
LSTM equations written out in numpy, on random weights in the official key layout; frame
counts; textlesslib chunking; safe/trusted checkpoint reading."""
from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resyn_bench.safeload import UnsafeCheckpointError, sha256_file
from resyn_bench.systems.encoders.cpc import cpc_num_frames, load_cpc

C, H, LEVELS = 16, 12, 4
CONVS = ((10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1))


def _official_weights(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=g)

    sd, in_dim = {}, 1
    for i, (k, _, _) in enumerate(CONVS):
        sd[f"gEncoder.conv{i}.weight"] = r(C, in_dim, k)
        sd[f"gEncoder.conv{i}.bias"] = r(C)
        sd[f"gEncoder.batchNorm{i}.weight"] = 1 + r(1, C, 1)
        sd[f"gEncoder.batchNorm{i}.bias"] = r(1, C, 1)
        in_dim = C
    for lvl in range(LEVELS):
        sd[f"gAR.baseNet.weight_ih_l{lvl}"] = r(4 * H, C if lvl == 0 else H)
        sd[f"gAR.baseNet.weight_hh_l{lvl}"] = r(4 * H, H)
        sd[f"gAR.baseNet.bias_ih_l{lvl}"] = r(4 * H)
        sd[f"gAR.baseNet.bias_hh_l{lvl}"] = r(4 * H)
    return sd


def _reference(sd: dict, wav: np.ndarray, levels: int) -> np.ndarray:
    """Independent forward pass (no module of the code under test)."""
    x = torch.from_numpy(wav).double().view(1, 1, -1)
    for i, (_k, s, p) in enumerate(CONVS):
        x = F.conv1d(x, sd[f"gEncoder.conv{i}.weight"].double(), sd[f"gEncoder.conv{i}.bias"].double(),
                     stride=s, padding=p)
        a = x[0].numpy()  # [C, T]
        mu = a.mean(axis=0, keepdims=True)
        var = a.var(axis=0, ddof=1, keepdims=True)
        a = (a - mu) / np.sqrt(var + 1e-5)
        a = a * sd[f"gEncoder.batchNorm{i}.weight"][0].double().numpy() + sd[f"gEncoder.batchNorm{i}.bias"][0].double().numpy()
        x = torch.from_numpy(np.maximum(a, 0.0))[None]
    seq = x[0].numpy().T  # [T, C]
    for lvl in range(levels):
        w_ih = sd[f"gAR.baseNet.weight_ih_l{lvl}"].double().numpy()
        w_hh = sd[f"gAR.baseNet.weight_hh_l{lvl}"].double().numpy()
        b = (sd[f"gAR.baseNet.bias_ih_l{lvl}"] + sd[f"gAR.baseNet.bias_hh_l{lvl}"]).double().numpy()
        h, c, out = np.zeros(H), np.zeros(H), []
        for t in range(seq.shape[0]):
            z = w_ih @ seq[t] + w_hh @ h + b
            i_g, f_g = 1 / (1 + np.exp(-z[:H])), 1 / (1 + np.exp(-z[H:2 * H]))
            g_g, o_g = np.tanh(z[2 * H:3 * H]), 1 / (1 + np.exp(-z[3 * H:]))
            c = f_g * c + i_g * g_g
            h = o_g * np.tanh(c)
            out.append(h)
        seq = np.stack(out)
    return seq.astype(np.float32)


@pytest.fixture(scope="module")
def weights():
    return _official_weights()


@pytest.fixture
def ckpt(weights, tmp_path):
    path = tmp_path / "cpc_tiny.pt"
    torch.save({"weights": weights, "config": {"hiddenEncoder": C, "hiddenGar": H,
                                               "nLevelsGRU": LEVELS, "arMode": "LSTM"},
                "best": 0.5}, path)
    return path


def _wav(n, seed=1):
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("layer", [0, 1, 2, 4])
def test_parity_with_independent_computation(ckpt, weights, layer):
    fx = load_cpc(ckpt, layer=layer)
    wav = _wav(4000 + 37)
    got = fx.extract(wav)
    if layer == 0:  # encoder output: reference with no LSTM level, C channels
        ref = _reference(weights, wav, 0)
        assert fx.dim == C
    else:
        ref = _reference(weights, wav, layer)
        assert fx.dim == H
    assert got.shape == ref.shape == (cpc_num_frames(len(wav)), fx.dim)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_only_requested_levels_are_built(ckpt):
    fx = load_cpc(ckpt, layer=2)
    assert fx.model.gAR.baseNet.num_layers == 2
    assert (fx.name, fx.sample_rate, fx.hop_size, fx.layer) == ("cpc", 16000, 160, 2)
    with pytest.raises(ValueError, match="0..4"):
        load_cpc(ckpt, layer=5)


def _conv_frames(n):
    for k, s, p in CONVS:
        n = (n + 2 * p - k) // s + 1
    return n


@pytest.mark.parametrize("n", [160, 1000, 16000, 16001, 16159, 16160, 63999, 64000])
def test_frame_count_single_pass(n):
    assert cpc_num_frames(n) == _conv_frames(n)
    if n % 160 == 0:
        assert cpc_num_frames(n) == n // 160


@pytest.mark.parametrize("n", [64001, 64159, 64160, 100000, 128000, 200000])
def test_frame_count_chunked(n):
    # GSLM's rule: 400 frames per full chunk, then rest // (n // frames of a whole pass)
    full = n // 64000
    expected = 400 * full + (n - 64000 * full) // (n // _conv_frames(n))
    assert cpc_num_frames(n) == expected
    assert expected == n // 160 + (n == 64159)  # 64159: padding gives the whole pass 401


def _gslm_rule(weights, wav, chunk, levels=2):
    """GSLM/textlesslib's reader, computed independently: full chunks as separate passes, then
    the tail frames from a pass over the WHOLE waveform (their ``x[:, -max_chunk:]`` slices the
    channel dimension of the (1, 1, N) tensor)."""
    n = len(wav)
    full = n // chunk
    parts = [_reference(weights, wav[j * chunk:(j + 1) * chunk], levels) for j in range(full)]
    if full * chunk < n:
        whole = _reference(weights, wav, levels)
        delta = (n - full * chunk) // (n // len(whole))
        if delta:
            parts.append(whole[-delta:])
    return np.concatenate(parts)


def test_textlesslib_chunking(ckpt, weights):
    chunk = 1600  # 10 frames per chunk
    fx = load_cpc(ckpt, layer=2, max_chunk=chunk)
    for n in (3 * chunk, 3 * chunk + 100, 3 * chunk + 500):
        wav = _wav(n, seed=n)
        got = fx.extract(wav)
        assert got.shape == (n // 160, H) == (cpc_num_frames(n, chunk), H)
        np.testing.assert_allclose(got, _gslm_rule(weights, wav, chunk), atol=1e-4, rtol=0)
        # full chunks are independent passes (zero LSTM state each time)
        for j in range(3):
            np.testing.assert_allclose(got[10 * j:10 * j + 10],
                                       _reference(weights, wav[j * chunk:(j + 1) * chunk], 2),
                                       atol=1e-4, rtol=0)


@pytest.fixture
def long_memory(tmp_path):
    """Weights whose LSTM remembers (forget gate ~0.999, input gate ~0.0025: a time constant
    of about 1000 frames without saturating the cell): the tail frames then depend on where
    the pass started, as with the real model."""
    sd = _official_weights(seed=3)
    for lvl in range(LEVELS):
        sd[f"gAR.baseNet.bias_ih_l{lvl}"][:H] -= 6.0
        sd[f"gAR.baseNet.bias_ih_l{lvl}"][H:2 * H] += 7.0
    path = tmp_path / "cpc_long.pt"
    torch.save({"weights": sd, "config": {"hiddenEncoder": C, "hiddenGar": H,
                                          "nLevelsGRU": LEVELS}}, path)
    return path, sd


@pytest.mark.parametrize("seconds", [5.0, 6.25, 10.0])
def test_long_inputs_match_gslm_tail_rule(long_memory, seconds):
    """Default max_chunk 64000: the tail frames come from a pass over the whole input, so they
    differ from a pass over the last 64000 samples (the LSTM has seen the whole utterance)."""
    ckpt, weights = long_memory
    fx = load_cpc(ckpt, layer=2)
    n = int(seconds * 16000)
    wav = _wav(n, seed=n)
    got = fx.extract(wav)
    assert got.shape == (n // 160, H) == (cpc_num_frames(n), H)
    np.testing.assert_allclose(got, _gslm_rule(weights, wav, 64000), atol=1e-4, rtol=0)
    full = (n // 64000) * 400
    rest = n // 160 - full
    last_chunk_only = _reference(weights, wav[-64000:], 2)[-rest:]
    assert np.abs(got[full:] - last_chunk_only).max() > 1e-3  # the rule matters here


def test_norm_features(ckpt):
    fx = load_cpc(ckpt, layer=1, norm_features=True)
    y = fx.extract(_wav(8000))
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(0, ddof=1), 1, atol=1e-3)


def test_short_input_gives_no_frames(ckpt):
    assert load_cpc(ckpt, layer=2).extract(np.zeros(3, np.float32)).shape == (0, H)


def test_full_pickle_needs_user_hash(weights, tmp_path):
    mod = types.ModuleType("fake_cpc_args")

    class FakeNamespace:
        def __init__(self):
            self.hiddenEncoder = C

    FakeNamespace.__module__, FakeNamespace.__qualname__ = mod.__name__, "FakeNamespace"
    mod.FakeNamespace = FakeNamespace
    sys.modules[mod.__name__] = mod
    path = tmp_path / "cpc_big_like.pt"
    try:
        torch.save({"weights": weights, "config": FakeNamespace()}, path)
    finally:
        del sys.modules[mod.__name__]
    with pytest.raises(UnsafeCheckpointError, match="trusted_sha256"):
        load_cpc(path)
    fx = load_cpc(path, layer=2, trusted_sha256=sha256_file(path))
    wav = _wav(3000)
    np.testing.assert_allclose(fx.extract(wav), _reference(weights, wav, 2), atol=1e-4, rtol=0)
    assert (tmp_path / "cpc_big_like.resyn.pt").is_file()
    # later loads use the tensors-only copy, no hash needed
    np.testing.assert_allclose(load_cpc(path, layer=1).extract(wav), _reference(weights, wav, 1),
                               atol=1e-4, rtol=0)


def test_missing_default_checkpoint(home):
    from resyn_bench.systems.encoders.features import make_feature_extractor

    with pytest.raises(FileNotFoundError) as err:
        make_feature_extractor("cpc")
    msg = str(err.value)
    assert "cpc_big_ll6kh_top_ctc.pt" in msg and str(home) in msg and "resyn-bench fetch" in msg


def test_make_feature_extractor_cpc(ckpt, weights):
    from resyn_bench.systems.encoders.features import make_feature_extractor

    fx = make_feature_extractor("cpc", checkpoint=str(ckpt))  # default layer 2
    wav = _wav(2000)
    assert fx.dim == H and fx.hop_size == 160
    np.testing.assert_allclose(fx.extract(wav), _reference(weights, wav, 2), atol=1e-4, rtol=0)
    assert math.isclose(fx.sample_rate / fx.hop_size, 100.0)


def test_default_cpc_trusts_the_catalogue_hash(weights, home, monkeypatch):
    """make_feature_extractor("cpc") reads the catalogue file's full pickle with the hash the
    catalogue documents (textlesslib's), without the user passing one."""
    import dataclasses

    from resyn_bench import catalogue
    from resyn_bench.systems.encoders.features import make_feature_extractor

    assert catalogue.known_sha256("cpc-big-ll6kh") == (
        "73155dad5d7c986fe7b7f548050060a8e9cc9a0ffd111a22932f38c3e617c5b8")
    mod = types.ModuleType("fake_cpc_args2")

    class FakeNamespace:
        def __init__(self):
            self.hiddenEncoder = C

    FakeNamespace.__module__, FakeNamespace.__qualname__ = mod.__name__, "FakeNamespace"
    mod.FakeNamespace = FakeNamespace
    path = catalogue.catalogue_path("cpc-big-ll6kh")
    path.parent.mkdir(parents=True)
    sys.modules[mod.__name__] = mod
    try:
        torch.save({"weights": weights, "config": FakeNamespace()}, path)
    finally:
        del sys.modules[mod.__name__]
    entry = catalogue.CATALOGUE["cpc-big-ll6kh"]
    # this stand-in file is not the real one: document its hash in the catalogue instead
    monkeypatch.setitem(catalogue.CATALOGUE, "cpc-big-ll6kh",
                        dataclasses.replace(entry, sha256=sha256_file(path)))
    fx = make_feature_extractor("cpc", convert=False)
    wav = _wav(2000)
    np.testing.assert_allclose(fx.extract(wav), _reference(weights, wav, 2), atol=1e-4, rtol=0)
    monkeypatch.setitem(catalogue.CATALOGUE, "cpc-big-ll6kh", dataclasses.replace(entry, sha256=None))
    with pytest.raises(UnsafeCheckpointError):
        make_feature_extractor("cpc", convert=False)
