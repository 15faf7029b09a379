"""In-house HuBERT against ``transformers.HubertModel`` (independent implementation) on tiny
random models, in the Hugging Face layout and in the fairseq layout; frame counts; computing
only the needed blocks; chunking; safe/trusted checkpoint reading."""
from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from resyn_bench.nn.hubert import (
    CONVERTED_SUFFIX,
    HubertArch,
    HubertModel,
    hubert_num_frames,
    load_hubert,
    read_hubert_checkpoint,
)
from resyn_bench.safeload import UnsafeCheckpointError, sha256_file

transformers = pytest.importorskip("transformers")

TOL = 1e-4
CONV_DIM = 16


def _tiny_hf(stable: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.HubertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
        conv_dim=(CONV_DIM,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, layerdrop=0.0)
    model = transformers.HubertModel(cfg).eval()
    with torch.no_grad():  # move every parameter off its init so a swapped name shows up
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _hf_hidden(model, wav: np.ndarray, normalize: bool = False):
    x = torch.from_numpy(wav)[None]
    if normalize:
        x = torch.nn.functional.layer_norm(x, x.shape[-1:])
    with torch.no_grad():
        return [h[0].numpy() for h in model(x, output_hidden_states=True).hidden_states]


# fairseq names written out here, independently of the module's own mapping tables
def _to_fairseq_names(hf_sd: dict, stable: bool) -> dict:
    out = {}
    for k, v in hf_sd.items():
        parts = k.split(".")
        if k.startswith("feature_extractor.conv_layers."):
            i, kind, p = parts[2], parts[3], parts[-1]
            if kind == "conv":
                out[f"feature_extractor.conv_layers.{i}.0.{p}"] = v
            else:
                sub = "2.1" if stable else "2"
                out[f"feature_extractor.conv_layers.{i}.{sub}.{p}"] = v
        elif k.startswith("feature_projection.layer_norm."):
            out["layer_norm." + parts[-1]] = v
        elif k.startswith("feature_projection.projection."):
            out["post_extract_proj." + parts[-1]] = v
        elif k == "encoder.pos_conv_embed.conv.parametrizations.weight.original0":
            out["encoder.pos_conv.0.weight_g"] = v
        elif k == "encoder.pos_conv_embed.conv.parametrizations.weight.original1":
            out["encoder.pos_conv.0.weight_v"] = v
        elif k == "encoder.pos_conv_embed.conv.bias":
            out["encoder.pos_conv.0.bias"] = v
        elif k.startswith("encoder.layers."):
            n, rest = parts[2], ".".join(parts[3:])
            rest = (rest.replace("attention.", "self_attn.")
                    .replace("feed_forward.intermediate_dense.", "fc1.")
                    .replace("feed_forward.output_dense.", "fc2."))
            if rest.startswith("layer_norm."):
                rest = "self_attn_layer_norm." + parts[-1]
            out[f"encoder.layers.{n}.{rest}"] = v
        elif k == "masked_spec_embed":
            out["mask_emb"] = v
        else:
            out[k] = v  # encoder.layer_norm.* keeps its name
    return out


def _fairseq_cfg(stable: bool = False, normalize: bool = False) -> dict:
    return {"model": {"_name": "hubert", "extractor_mode": "layer_norm" if stable else "default",
                      "conv_feature_layers": f"[({CONV_DIM}, 10, 5)] + [({CONV_DIM}, 3, 2)] * 4 + "
                                             f"[({CONV_DIM},2,2)] * 2",
                      "encoder_layers": 3, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 48,
                      "encoder_attention_heads": 4, "activation_fn": "gelu", "conv_pos": 16,
                      "conv_pos_groups": 4, "conv_bias": False, "layer_norm_first": stable},
            "task": {"_name": "hubert_pretraining", "normalize": normalize}}


@pytest.fixture(scope="module")
def hf_model():
    return _tiny_hf()


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("hubert") / "hf"
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wav():
    rng = np.random.default_rng(1)
    return (0.3 * rng.standard_normal(7 * 320 + 400 + 123)).astype(np.float32)


def test_hf_directory_parity(hf_model, hf_dir, wav):
    assert (hf_dir / "model.safetensors").is_file()
    ref = _hf_hidden(hf_model, wav)
    for layer in (1, 2, 3):
        fx = load_hubert(hf_dir, layer=layer)
        got = fx.extract(wav)
        assert got.shape == ref[layer].shape == (hubert_num_frames(len(wav)), 32)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref[layer], atol=TOL, rtol=0)
        assert len(fx.model.encoder.layers) == layer  # later blocks are not even built


def test_hf_state_dict_file_parity(hf_model, wav, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save(hf_model.state_dict(), path)
    arch = HubertArch(conv_layers=((CONV_DIM, 10, 5),) + ((CONV_DIM, 3, 2),) * 4 + ((CONV_DIM, 2, 2),) * 2,
                      embed_dim=32, num_layers=3, num_heads=4, ffn_dim=48, pos_conv_kernel=16,
                      pos_conv_groups=4)
    got = load_hubert(path, layer=2, arch=arch).extract(wav)
    np.testing.assert_allclose(got, _hf_hidden(hf_model, wav)[2], atol=TOL, rtol=0)


def test_fairseq_layout_parity(hf_model, wav, tmp_path):
    sd = _to_fairseq_names(hf_model.state_dict(), stable=False)
    assert "feature_extractor.conv_layers.0.2.weight" in sd  # group norm of the first conv
    sd["label_embs_concat"] = torch.zeros(3, 8)  # pre-training heads are ignored
    sd["final_proj.weight"] = torch.zeros(8, 32)
    path = tmp_path / "hubert_tiny.pt"
    torch.save({"model": sd, "cfg": _fairseq_cfg()}, path)  # tensors + plain dicts: safe
    ref = _hf_hidden(hf_model, wav)
    for layer in (1, 3):
        got = load_hubert(path, layer=layer).extract(wav)
        np.testing.assert_allclose(got, ref[layer], atol=TOL, rtol=0)
    # a safe file is not converted (only full pickles are)
    assert not (tmp_path / ("hubert_tiny" + CONVERTED_SUFFIX)).exists()


def test_prenorm_layer_norm_extractor_parity(wav, tmp_path):
    """HuBERT-Large-style variant: LayerNorm after every conv, pre-LN blocks."""
    model = _tiny_hf(stable=True, seed=3)
    ref = _hf_hidden(model, wav)
    sd = _to_fairseq_names(model.state_dict(), stable=True)
    path = tmp_path / "large_like.pt"
    torch.save({"model": sd, "cfg": _fairseq_cfg(stable=True)}, path)
    for layer in (1, 2):  # intermediate blocks: no final encoder LayerNorm (fairseq semantics)
        got = load_hubert(path, layer=layer).extract(wav)
        np.testing.assert_allclose(got, ref[layer], atol=TOL, rtol=0)
    model.save_pretrained(tmp_path / "hf")
    np.testing.assert_allclose(load_hubert(tmp_path / "hf", layer=2).extract(wav), ref[2],
                               atol=TOL, rtol=0)


def test_normalize_option(hf_model, wav, tmp_path):
    sd = _to_fairseq_names(hf_model.state_dict(), stable=False)
    path = tmp_path / "norm.pt"
    torch.save({"model": sd, "cfg": _fairseq_cfg(normalize=True)}, path)
    fx = load_hubert(path, layer=2)
    assert fx.arch.normalize
    ref = _hf_hidden(hf_model, 3.0 * wav + 0.1, normalize=True)
    np.testing.assert_allclose(fx.extract(3.0 * wav + 0.1), ref[2], atol=TOL, rtol=0)


@pytest.mark.parametrize("n", [399, 400, 401, 719, 720, 721, 1000, 16000, 135680, 160000 + 77])
def test_frame_count_formula(n):
    expected = max(0, math.floor((n - 400) / 320) + 1)
    assert hubert_num_frames(n) == expected
    assert HubertArch().receptive_field == 400 and HubertArch().hop_size == 320


def test_frame_count_of_model(hf_model, hf_dir):
    fx = load_hubert(hf_dir, layer=1)
    for n in (400, 401, 719, 720, 1999, 4000):
        x = np.zeros(n, np.float32)
        x[::7] = 0.1
        assert fx.extract(x).shape == (math.floor((n - 400) / 320) + 1, 32)
    assert fx.extract(np.zeros(399, np.float32)).shape == (0, 32)
    assert hubert_num_frames(135680) == 423  # the LJ file of the reference repo


def test_only_needed_blocks_are_computed(hf_model, hf_dir, wav):
    arch, sd = read_hubert_checkpoint(hf_dir)
    full = HubertModel(arch)
    full.load_fairseq_state_dict(sd)
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        every = full(x, return_all=True)
        assert len(every) == arch.num_layers + 1
        for layer in (1, 2):
            short = HubertModel(arch, max_layer=layer)
            short.load_fairseq_state_dict(sd)
            assert len(short.encoder.layers) == layer
            torch.testing.assert_close(short(x), every[layer], atol=1e-6, rtol=0)
            torch.testing.assert_close(full(x, output_layer=layer), every[layer], atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="output_layer"):
            HubertModel(arch, max_layer=1)(x, output_layer=2)


def test_chunking_keeps_the_frame_count(hf_model, hf_dir):
    """Chunks cut on frame boundaries, frames split evenly; each chunk an independent pass."""
    chunk = 20 * 320  # 19 frames per chunk at most
    fx = load_hubert(hf_dir, layer=2, max_chunk=chunk)
    whole = load_hubert(hf_dir, layer=2)
    rng = np.random.default_rng(5)
    for n in (chunk + 1, 2 * chunk + 150, 3 * chunk + 1000):
        x = (0.2 * rng.standard_normal(n)).astype(np.float32)
        got = fx.extract(x)
        total = math.floor((n - 400) / 320) + 1
        assert got.shape == (total, 32)
        k = math.ceil(total / 19)
        bounds = [j * total // k for j in range(k + 1)]
        for j in range(k):
            f0, f1 = bounds[j], bounds[j + 1]
            s1 = n if j == k - 1 else (f1 - 1) * 320 + 400
            np.testing.assert_allclose(got[f0:f1], whole.extract(x[f0 * 320:s1]), atol=1e-5, rtol=0)
    # up to max_chunk samples: one pass over the whole input, trailing samples included
    x = (0.2 * rng.standard_normal(chunk - 100)).astype(np.float32)
    np.testing.assert_allclose(fx.extract(x), _hf_hidden(hf_model, x)[2], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="at least one frame"):
        load_hubert(hf_dir, layer=1, max_chunk=399)


def _pickle_with_foreign_class(path, payload_cfg: dict, model_sd: dict):
    """A checkpoint whose cfg is an object of a module that is gone at load time (like the
    official file's omegaconf/fairseq objects)."""
    mod = types.ModuleType("fake_fairseq_cfg")

    class FakeDictConfig:
        def __init__(self, content):
            self._content = content

    class FakeDictionary:  # like fairseq.data.Dictionary in task_state
        def __init__(self):
            self.symbols = ["<s>", "a"]

    for cls in (FakeDictConfig, FakeDictionary):
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    sys.modules[mod.__name__] = mod
    try:
        cfg = FakeDictConfig({k: FakeDictConfig(v) for k, v in payload_cfg.items()})
        torch.save({"model": model_sd, "cfg": cfg, "args": None,
                    "task_state": {"dictionaries": [FakeDictionary()]}}, path)
    finally:
        del sys.modules[mod.__name__]


def test_full_pickle_needs_trusted_hash_then_converts_once(hf_model, wav, tmp_path, caplog):
    sd = _to_fairseq_names(hf_model.state_dict(), stable=False)
    path = tmp_path / "hubert_official_like.pt"
    _pickle_with_foreign_class(path, _fairseq_cfg(), sd)
    with pytest.raises(pickle.UnpicklingError):  # really not loadable the safe way
        torch.load(path, weights_only=True)
    with pytest.raises(UnsafeCheckpointError, match=sha256_file(path)):
        load_hubert(path, layer=2)
    assert not (tmp_path / ("hubert_official_like" + CONVERTED_SUFFIX)).exists()

    fx = load_hubert(path, layer=2, trusted_sha256=sha256_file(path))
    ref = _hf_hidden(hf_model, wav)
    np.testing.assert_allclose(fx.extract(wav), ref[2], atol=TOL, rtol=0)
    converted = tmp_path / ("hubert_official_like" + CONVERTED_SUFFIX)
    assert converted.is_file()
    obj = torch.load(converted, weights_only=True)  # tensors and plain values only
    assert obj["arch"]["num_layers"] == 3 and obj["arch"]["conv_layers"][0] == [CONV_DIM, 10, 5]

    # second load: no hash needed, the converted copy is used
    fx2 = load_hubert(path, layer=3)
    np.testing.assert_allclose(fx2.extract(wav), ref[3], atol=TOL, rtol=0)
    # the converted file alone is a valid checkpoint too
    np.testing.assert_allclose(load_hubert(converted, layer=1).extract(wav), ref[1], atol=TOL, rtol=0)


def test_missing_default_checkpoint_names_url_and_path(home):
    from resyn_bench.systems.encoders.features import MissingCheckpointError, make_feature_extractor

    with pytest.raises(MissingCheckpointError) as err:
        make_feature_extractor("hubert")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt" in msg
    assert str(home) in msg and "resyn-bench fetch" in msg


def test_make_feature_extractor_hubert(hf_model, hf_dir, wav):
    from resyn_bench.systems.encoders.features import make_feature_extractor

    fx = make_feature_extractor("hubert", layer=2, checkpoint=str(hf_dir))
    assert (fx.name, fx.sample_rate, fx.hop_size, fx.dim) == ("hubert", 16000, 320, 32)
    np.testing.assert_allclose(fx.extract(wav), _hf_hidden(hf_model, wav)[2], atol=TOL, rtol=0)


# A real omegaconf pickle (protocol 2), made in a separate environment with omegaconf 2.3:
#   cfg = OmegaConf.create({"model": OmegaConf.structured(ModelCfg), "task": {"normalize": False,
#                           "labels": ["km"]}})   # ModelCfg: a dataclass with an Enum field
#   pickle.dump({"cfg": cfg, "args": argparse.Namespace(encoder_layers=12, conv_pos=128)}, f, 2)
# omegaconf is not installed here: the inert unpickler must still recover the plain values.
_OMEGACONF_PICKLE = (
    "eNpllWtj1EQUhmtLC00vcvECglovaAq1tgtVUSuWXhDbLhqKBrHESXayE5pk9iSTStHBolZavN8+6D/x33lmZkPT7n7J"
    "ZHbmvM857+TMZreELtvt6erqCsImPBbwhDZJwNNwvBEFQg2ipjWHw1kzhO7R+9Aj4YDt9uMmL6GCNIgg0FvZ6pOcWrhB"
    "kCil2XJ7iQV9uPeghEO2ewj3ZjT0xEaLQn+AjyhtWjPphgWWO4B/cv82DYT5fyDwPL+IYhGlnmcpLgsGdQjeEhFPSQxD"
    "2zqHNboBw3W3F4dhTJo5PC7hsGuVr17GuYAjO+6wls95vE4zLyABo3A0CHgcoyYGzK0GDUkRC6N1jA1uwRMOPKk1UcNg"
    "PcUsdxAnaEwTmrZZn2ZW4bsHVWlaJMNpOF7X2zysjFDvJyQ8Y2vEhDdoDCeZKukpCc/arJepEj0n4Xmb9TOLqcwTotNe"
    "VotnQ3RghA1ts2F2kmFyL7AjO+wo04QvOvASQyimGdhx1sNQ62Wj5aUkoXC6YlKKAXPrmsiw8nUcW/AKar8qwUaO/Wbu"
    "ejiKi85IOIuAe2wp0ijQUcbYABtjQzuIeFohvlZBHHfgdY12yj2goNbRugm3D4es8GkmYBKLp8yhd0RGAsEzTxUJah3c"
    "82mRGOpzCHRewpSt44QRjRs5vCHhTVvbMDe/MHN9aQXe0m9tX+GCPhRLMzfmHa9+1VmGt/VETDbwQKQ8S+CdQh9wijrG"
    "2Xd3vZhlPApQehoNU/V4T8JFZdg0pj5tUq+p1N+vpD7jwCWTOpvARRe2YNaBOUz3mPr2eLruhZSIIqOehshhnik/FiRc"
    "ttsyH0i4omQqFZ5XMh9WZBYdWCpl3AkMfdOemqyNTU6MTY2ujpwdMa/nxmr4dmbk/KOZWnumBsulBanyMytx6h0WXMHz"
    "3KSZceEq8n0k4eOS1ZFwbf8RiTl+47CC9CuGvq7or1foP3Hg05J+cRBBDu8xxQujLBfgdqBc4jymJDUoN1D+Mwk3S5TP"
    "JazuR/FxgwW3EOWWQXEVildB+cIBUqLstD/pRsZbvBDgdwAsxJwIIx+gZEMCLeVDCc398qFabgFDfWb0faUfVfRvO7BW"
    "6l+++N8/6vdv4ReIoj4dQfI1iHXrSCSkZevgElrt1sEGTZ+IVWSoRM4cyDv7hDANXZWZxNFdCkVHktieTYrrqPSlhDtl"
    "ihsS7rZV60a0UKJfVUS/dkBqscSUs08b69M4h3sVoTjKy0tnCYflpfMNimxKuF+m+a2E73Y7ZOWE4R4LvjcM9xTDVoXh"
    "BwceYOIrjxJP2IlV2GYqnR0JD8t0fpTw0550FrtUqJ8roX5x4FcdYhM/s251KyTwW+ETbVDpEcnwBvo9wAdeBdhE69iC"
    "8xZRneMPlPlTwl82qy+aq0y3gBbP4e/FTQwx/j+n53Pg"
)


def test_inert_unpickler_decodes_real_omegaconf_config():
    import base64
    import io
    import zlib

    from resyn_bench.nn.hubert import arch_from_fairseq_cfg
    from resyn_bench.safeload import _inert_pickle_module, plain

    data = zlib.decompress(base64.b64decode("".join(_OMEGACONF_PICKLE)))
    obj = _inert_pickle_module().Unpickler(io.BytesIO(data)).load()
    cfg = plain(obj["cfg"])
    assert cfg["model"]["extractor_mode"] == "default"  # an Enum member -> its value
    assert cfg["model"]["encoder_layers"] == 12 and cfg["model"]["layer_norm_first"] is False
    assert cfg["task"] == {"normalize": False, "labels": ["km"]}
    assert plain(obj["args"]) == {"encoder_layers": 12, "conv_pos": 128}
    arch = arch_from_fairseq_cfg(cfg["model"], cfg["task"])
    assert arch.conv_layers == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    assert arch.receptive_field == 400 and arch.hop_size == 320


def test_default_checkpoint_comes_from_the_catalogue_path(hf_model, wav, home):
    from resyn_bench.catalogue import catalogue_path
    from resyn_bench.systems.encoders.features import make_feature_extractor

    path = catalogue_path("hubert-base-ls960")
    assert str(path).startswith(str(home))
    path.parent.mkdir(parents=True)
    torch.save({"model": _to_fairseq_names(hf_model.state_dict(), stable=False),
                "cfg": _fairseq_cfg()}, path)
    fx = make_feature_extractor("hubert", layer=3)
    assert fx.checkpoint == str(path)
    np.testing.assert_allclose(fx.extract(wav), _hf_hidden(hf_model, wav)[3], atol=TOL, rtol=0)


@pytest.mark.slow
def test_official_checkpoint_if_present():
    """With the real hubert_base_ls960.pt in the cache: HuBERT Base sizes, layer-6 features."""
    from resyn_bench.catalogue import catalogue_path

    path = catalogue_path("hubert-base-ls960")
    if not path.is_file():
        pytest.skip(f"{path} not present (resyn-bench fetch hubert-base-ls960)")
    fx = load_hubert(path, layer=6)
    assert fx.arch == HubertArch() and not fx.arch.normalize
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    y = fx.extract(x)
    assert y.shape == (49, 768) and np.isfinite(y).all()


def test_safetensors_with_an_unsupported_dtype_is_a_clear_error(tmp_path):
    import json
    import struct

    from resyn_bench.safeload import read_safetensors

    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00\x00")
    with pytest.raises(ValueError, match="'w' has dtype 'F8_E4M3'"):
        read_safetensors(path)
