"""wav2vec 2.0 CTC (in-house, on the HuBERT transformer) against ``transformers.Wav2Vec2ForCTC``
on tiny random models in both published variants (group norm = wav2vec2-base-960h, stable
layer norm = wav2vec2-large-960h-lv60-self / lv-60-espeak-cv-ft), in the published file layout
(legacy weight_g/weight_v names in pytorch_model.bin, vocab.json, preprocessor_config.json);
greedy CTC decoding; the ``wav2vec2`` ASR backend and the phone-CTC PER group."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from resyn_bench.nn.wav2vec2 import (  # noqa: E402
    CTCVocab,
    ctc_greedy,
    load_wav2vec2_ctc,
    normalise_waveform,
    read_vocab,
)

TOL = 1e-4
LETTERS = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "'"]
PHONES = ["<pad>", "<s>", "</s>", "<unk>", "ə", "aɪ", "t", "tʃ", "iː", "n", "ð", "s"]


def _tiny_config(stable: bool, vocab: int):
    return transformers.Wav2Vec2Config(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group", conv_bias=stable,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, pad_token_id=0)


def make_tiny_folder(folder: Path, stable: bool, tokens=LETTERS, legacy: bool = True,
                     seed: int = 0, delimiter: str | None = "|"):
    """A random Wav2Vec2ForCTC saved in the published layout; returns the HF model."""
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2ForCTC(_tiny_config(stable, len(tokens))).eval()
    with torch.no_grad():  # move every parameter off its init so a swapped name shows up
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if legacy:  # the 2021 files: pytorch_model.bin with weight-norm weight_g / weight_v
        from safetensors.torch import load_file

        sd = load_file(folder / "model.safetensors")
        sd = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in sd.items()}
        (folder / "model.safetensors").unlink()
        torch.save(sd, folder / "pytorch_model.bin")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}),
                                       encoding="utf-8")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "feature_size": 1, "padding_value": 0.0,
         "return_attention_mask": stable, "sampling_rate": 16000}), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}),
        encoding="utf-8")
    if delimiter is None:
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"pad_token": "<pad>", "word_delimiter_token": None}), encoding="utf-8")
    return model


def _hf_logits(model, wav: np.ndarray) -> np.ndarray:
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    x = fe(wav, sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        return model(x).logits[0].numpy()


@pytest.mark.parametrize("stable", [False, True], ids=["base-groupnorm", "large-stablelayernorm"])
@pytest.mark.parametrize("legacy", [True, False], ids=["bin-weight_g", "safetensors"])
def test_logits_match_transformers(tmp_path, stable, legacy):
    hf = make_tiny_folder(tmp_path / "m", stable, legacy=legacy)
    rec = load_wav2vec2_ctc(tmp_path / "m")
    wav = (0.3 * np.random.default_rng(1).standard_normal(16000 + 123)).astype(np.float32)
    ours = rec.logits(wav)
    ref = _hf_logits(hf, wav)
    assert ours.shape == ref.shape == (50, len(LETTERS))  # floor((16123 - 400) / 320) + 1
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
    # greedy decoding equals transformers' own tokenizer decode of the same arg max (which
    # keeps <unk> in the text; we drop it)
    ids = ref.argmax(-1)
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "m" / "vocab.json"))
    expected = tok.decode(ids).replace("<unk>", "")
    assert expected and rec.transcribe(wav) == " ".join(expected.split())


def test_phone_vocabulary_decodes_symbols(tmp_path):
    hf = make_tiny_folder(tmp_path / "p", True, tokens=PHONES, legacy=False, delimiter=None)
    rec = load_wav2vec2_ctc(tmp_path / "p")
    assert rec.unit == "phones" and rec.vocab.word_delimiter is None
    wav = (0.3 * np.random.default_rng(2).standard_normal(12000)).astype(np.float32)
    ids = _hf_logits(hf, wav).argmax(-1)
    expected = [PHONES[i] for i in ctc_greedy(ids, 0) if i > 3]
    assert rec.phones(wav) == expected


def test_ctc_greedy_and_text():
    # blank between repeats keeps both; runs collapse; specials dropped; | -> space
    assert ctc_greedy([0, 5, 5, 0, 5, 4, 4, 6, 0, 0], blank=0) == [5, 5, 4, 6]
    v = CTCVocab(tokens=LETTERS, blank=0, special=frozenset({0, 1, 2, 3}))
    assert v.unit == "letters"
    assert v.ids_to_text([4, 6, 5, 1, 4, 4, 7, 10, 9, 4]) == "TE A'N"
    p = CTCVocab(tokens=PHONES, blank=0, special=frozenset({0, 1, 2, 3}), word_delimiter=None)
    assert p.unit == "phones" and p.ids_to_text([10, 8, 3, 7]) == "ð iː tʃ"


def test_normalise_matches_feature_extractor():
    wav = (0.1 + 0.02 * np.random.default_rng(3).standard_normal(5000)).astype(np.float32)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    ref = np.asarray(fe(wav, sampling_rate=16000).input_values[0])
    np.testing.assert_allclose(normalise_waveform(wav), ref, atol=1e-5)


def test_vocab_reading_and_errors(tmp_path):
    make_tiny_folder(tmp_path / "m", False, legacy=False)
    v = read_vocab(tmp_path / "m")
    assert v.blank == 0 and v.special == {0, 1, 2, 3} and v.word_delimiter == "|"
    (tmp_path / "m" / "vocab.json").write_text(json.dumps({"a": 0, "b": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match="token ids"):
        read_vocab(tmp_path / "m")
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        load_wav2vec2_ctc(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_wav2vec2_ctc(tmp_path / "absent")


def test_vocab_size_mismatch_is_an_error(tmp_path):
    make_tiny_folder(tmp_path / "m", False, legacy=False)
    (tmp_path / "m" / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(LETTERS[:-1])}), encoding="utf-8")
    with pytest.raises(ValueError, match="lm_head has 11 outputs"):
        load_wav2vec2_ctc(tmp_path / "m")


def test_short_input_gives_empty_output(tmp_path):
    make_tiny_folder(tmp_path / "m", False, legacy=False)
    rec = load_wav2vec2_ctc(tmp_path / "m")
    assert rec.logits(np.zeros(100, np.float32)).shape == (0, len(LETTERS))
    assert rec.transcribe(np.zeros(100, np.float32)) == ""


# --------------------------------------------------------------------------------------------
# the wav2vec2 ASR backend and the phn group

from dataclasses import dataclass  # noqa: E402

from resyn_bench.audio import Audio  # noqa: E402


@dataclass
class Utt:
    utt_id: str
    text: str | None = None
    speaker: str = "s"


def _rig_head(folder: Path, token_id: int):
    """Make every frame's arg max ``token_id`` (zero lm_head weight, bias favouring it)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(folder / "model.safetensors")
    sd["lm_head.weight"] = torch.zeros_like(sd["lm_head.weight"])
    b = torch.zeros_like(sd["lm_head.bias"])
    b[token_id] = 5.0
    sd["lm_head.bias"] = b
    save_file(sd, folder / "model.safetensors")


def test_backend_transcribes_lower_case_words(tmp_path):
    from resyn_bench.metrics.asr import make_asr

    make_tiny_folder(tmp_path / "m", True, legacy=False)
    backend = make_asr("wav2vec2", model=str(tmp_path / "m"), device="cpu")
    wav = (0.3 * np.random.default_rng(4).standard_normal(16000)).astype(np.float32)
    ref = load_wav2vec2_ctc(tmp_path / "m").transcribe(wav)
    backend.load()
    assert backend.transcribe(wav) == ref.lower() and ref and ref != ref.lower()
    s = backend.settings()
    assert s["backend"] == "wav2vec2" and s["device"] == "cpu" and s["model"] == "dir:m"
    from resyn_bench.safeload import sha256_file

    assert s["weights_sha256"] == sha256_file(tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError, match="wav2vec2"):
        make_asr("wav2vec2", beam_size=3)


def test_asr_group_with_wav2vec2_scores_known_answer(tmp_path):
    from resyn_bench.metrics.intelligibility import IntelligibilityMetrics

    make_tiny_folder(tmp_path / "m", False, legacy=False)
    _rig_head(tmp_path / "m", LETTERS.index("A"))  # every frame "A" -> transcript "a"
    g = IntelligibilityMetrics(backend="wav2vec2", model=str(tmp_path / "m"), device="cpu",
                               normalizer="basic", per=False)
    g.load()
    sc = g.score({}, Audio(np.full(8000, 0.1, np.float32), 16000), Utt("u", "a cat sat"))
    assert sc.extra["hyp"] == "a"
    assert sc.values["asr.wer"] == pytest.approx(2 / 3)  # two deletions of three words


def test_missing_catalogue_model_names_url_and_path(home):
    from resyn_bench import catalogue
    from resyn_bench.metrics.asr import ModelMissingError, make_asr

    b = make_asr("wav2vec2")  # the paper's model by default; nothing loaded yet
    with pytest.raises(ModelMissingError) as ei:
        b.load()
    msg = str(ei.value)
    path = catalogue.catalogue_path("wav2vec2-large-960h-lv60-self")
    assert str(path) in msg and "resyn-bench fetch wav2vec2-large-960h-lv60-self" in msg
    assert "https://huggingface.co/facebook/wav2vec2-large-960h-lv60-self/resolve/main/" \
           "pytorch_model.bin" in msg
    assert ei.value.url.endswith("pytorch_model.bin") and ei.value.path == path
    assert b.settings()["weights_sha256"] is None


def test_catalogue_folder_loads_when_placed(home):
    from resyn_bench import catalogue
    from resyn_bench.metrics.asr import make_asr
    from resyn_bench.metrics.wav2vec2 import CTC_MODELS

    for name in CTC_MODELS:
        e = catalogue.get_entry(name)
        assert e.url.startswith("https://huggingface.co/facebook/") and e.sha256 is None
        assert {catalogue.get_entry(r).relpath.rsplit("/", 1)[1] for r in e.requires} == {
            "config.json", "vocab.json", "preprocessor_config.json"}
    folder = catalogue.catalogue_path("wav2vec2-base-960h").parent
    make_tiny_folder(folder, False, legacy=True)  # pytorch_model.bin, as published
    for extra in ("special_tokens_map.json",):
        (folder / extra).unlink()
    b = make_asr("wav2vec2", model="wav2vec2-base-960h", device="cpu")
    b.load()
    assert isinstance(b.transcribe(np.zeros(4000, np.float32)), str)
    assert b.settings()["model"] == "wav2vec2-base-960h"


def test_models_of_the_wrong_kind_are_refused(tmp_path):
    from resyn_bench.metrics.asr import make_asr
    from resyn_bench.metrics.wav2vec2 import PhoneCTCMetrics

    make_tiny_folder(tmp_path / "p", True, tokens=PHONES, legacy=False, delimiter=None)
    make_tiny_folder(tmp_path / "m", False, legacy=False)
    with pytest.raises(Exception, match="phone model"):
        make_asr("wav2vec2", model=str(tmp_path / "p")).load()
    with pytest.raises(Exception, match="letter"):
        PhoneCTCMetrics(model=str(tmp_path / "m")).load()


# espeak-ng en-us phones of "the church is nice", written out by hand
NICE = ["ð", "ə", "tʃ", "ɜː", "tʃ", "ɪ", "z", "n", "aɪ", "s"]


def test_reference_phones_are_espeak_ipa():
    pytest.importorskip("phonemizer")
    from resyn_bench.metrics.wav2vec2 import EspeakIPA

    assert EspeakIPA()("The church is NICE.") == NICE
    assert EspeakIPA()("  ") == []


def _levenshtein(a, b):
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_phone_ctc_per_known_answer(tmp_path):
    pytest.importorskip("phonemizer")
    pytest.importorskip("jiwer")
    from resyn_bench.metrics.wav2vec2 import PhoneCTCMetrics

    tokens = ["<pad>", "<s>", "</s>", "<unk>", "ð", "ə", "tʃ", "ɜː", "ɪ", "z", "n", "aɪ", "s"]
    make_tiny_folder(tmp_path / "p", True, tokens=tokens, legacy=False, delimiter=None)
    _rig_head(tmp_path / "p", tokens.index("tʃ"))  # the recogniser hears one "tʃ"
    g = PhoneCTCMetrics(model=str(tmp_path / "p"), device="cpu")
    assert [s.key for s in g.specs] == ["phn.per"] and g.specs[0].label == "PER (phone CTC)"
    g.load()
    sc = g.score({}, Audio(np.full(8000, 0.1, np.float32), 16000), Utt("u", "the church is nice"))
    assert sc.extra["hyp_phones"] == "tʃ" and sc.extra["ref_phones"] == " ".join(NICE)
    assert sc.values["phn.per"] == pytest.approx(9 / 10) == _levenshtein(["tʃ"], NICE) / 10
    assert sc.counts["ref_oov_phones"] == 0
    sc2 = g.score({}, Audio(np.full(8000, 0.1, np.float32), 16000), Utt("v", "nice"))
    # pooled: summed edits over summed reference phones
    pooled = g.aggregate([{"counts": sc.counts}, {"counts": sc2.counts}])
    assert pooled["phn.per"] == pytest.approx((9 + 3) / (10 + 3))
    s = g.settings()
    assert "espeak en-us" in s["reference"]["g2p"] and s["recognizer"]["model"] == "dir:p"
    with pytest.raises(Exception, match="transcript"):
        g.score({}, Audio(np.zeros(8000, np.float32), 16000), Utt("w", None))


def test_phn_group_is_registered():
    from resyn_bench.registry import make_metric

    g = make_metric("phn", model="wav2vec2-lv-60-espeak-cv-ft")
    assert g.name == "phn" and g.needs_text


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    make_tiny_folder(tmp_path / "m", True, legacy=False)
    wav = (0.3 * np.random.default_rng(8).standard_normal(32000)).astype(np.float32)
    cpu = load_wav2vec2_ctc(tmp_path / "m", device="cpu").logits(wav)
    gpu = load_wav2vec2_ctc(tmp_path / "m", device="cuda").logits(wav)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3, rtol=0)


# --------------------------------------------------------------------------------------------
# fairseq fine-tuned CTC checkpoints

def _hf_ctc_to_fairseq(sd: dict, stable: bool) -> dict:
    """transformers Wav2Vec2ForCTC names -> fairseq's Wav2VecCtc names (written out here)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("lm_head."):
            out["w2v_encoder.proj." + k.split(".")[-1]] = v
            continue
        k = k.removeprefix("wav2vec2.")
        p = k.split(".")
        if k.startswith("feature_extractor.conv_layers."):
            if p[3] == "conv":
                name = f"feature_extractor.conv_layers.{p[2]}.0.{p[4]}"
            else:
                name = f"feature_extractor.conv_layers.{p[2]}.2.{'1.' if stable else ''}{p[4]}"
        elif k.startswith("feature_projection.layer_norm."):
            name = f"layer_norm.{p[-1]}"
        elif k.startswith("feature_projection.projection."):
            name = f"post_extract_proj.{p[-1]}"
        elif k.endswith("parametrizations.weight.original0"):
            name = "encoder.pos_conv.0.weight_g"
        elif k.endswith("parametrizations.weight.original1"):
            name = "encoder.pos_conv.0.weight_v"
        elif k == "encoder.pos_conv_embed.conv.bias":
            name = "encoder.pos_conv.0.bias"
        elif k.startswith("encoder.layers."):
            rest = (".".join(p[3:]).replace("attention.", "self_attn.")
                    .replace("feed_forward.intermediate_dense", "fc1")
                    .replace("feed_forward.output_dense", "fc2"))
            if rest.startswith("layer_norm."):
                rest = "self_attn_layer_norm." + p[-1]
            name = f"encoder.layers.{p[2]}.{rest}"
        elif k == "masked_spec_embed":
            name = "mask_emb"
        else:
            name = k  # encoder.layer_norm.*
        out["w2v_encoder.w2v_model." + name] = v
    return out


def _fairseq_cfg(stable: bool) -> dict:
    conv = "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2"
    w2v_model = {"_name": "wav2vec2", "extractor_mode": "layer_norm" if stable else "default",
                 "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 48,
                 "encoder_attention_heads": 4, "activation_fn": "gelu",
                 "layer_norm_first": stable, "conv_feature_layers": conv, "conv_bias": stable,
                 "conv_pos": 16, "conv_pos_groups": 4}
    return {"model": {"_name": "wav2vec_ctc",
                      "w2v_args": {"model": w2v_model, "task": {"normalize": stable}}},
            "task": {"_name": "audio_finetuning", "normalize": stable}}


@pytest.mark.parametrize("stable", [False, True], ids=["base", "large-lv60"])
def test_fairseq_ctc_checkpoint_matches_transformers(tmp_path, stable):
    # the HF model's vocabulary, written as fairseq orders it: <s>(blank) <pad> </s> <unk> + dict
    hf = make_tiny_folder(tmp_path / "hf", stable, legacy=False)
    torch.save({"model": _hf_ctc_to_fairseq(hf.state_dict(), stable), "cfg": _fairseq_cfg(stable)},
               tmp_path / "ctc.pt")
    (tmp_path / "dict.ltr.txt").write_text(
        "".join(f"{t} {100 - i}\n" for i, t in enumerate(LETTERS[4:])), encoding="utf-8")
    rec = load_wav2vec2_ctc(tmp_path / "ctc.pt")
    assert rec.vocab.tokens[4:] == LETTERS[4:] and rec.vocab.blank == 0
    assert rec.normalize is stable
    wav = (0.3 * np.random.default_rng(6).standard_normal(16000)).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    if stable:  # fairseq normalises with layer_norm (eps 1e-5)
        x = torch.nn.functional.layer_norm(x, x.shape[-1:])
    with torch.no_grad():
        ref = hf(x).logits[0].numpy()
    np.testing.assert_allclose(rec.logits(wav), ref, atol=TOL, rtol=0)
    ids = [int(i) for i in ref.argmax(-1)]
    # fairseq's blank is id 0 (<s>); HF's vocabulary calls that row <pad>
    expected = "".join(" " if LETTERS[i] == "|" else LETTERS[i]
                       for i in ctc_greedy(ids, 0) if i > 3)
    assert rec.transcribe(wav) == " ".join(expected.split())


def test_fairseq_pickle_needs_trust_and_dictionary(tmp_path):
    import argparse

    from resyn_bench.metrics.asr import make_asr
    from resyn_bench.safeload import UnsafeCheckpointError, sha256_file

    hf = make_tiny_folder(tmp_path / "hf", False, legacy=False)
    cfg = _fairseq_cfg(False)
    # legacy layout: an argparse Namespace in "args" (a full pickle, like the 2020 files)
    ns = argparse.Namespace(w2v_args=argparse.Namespace(**cfg["model"]["w2v_args"]["model"],
                                                        normalize=False), normalize=False)
    torch.save({"model": _hf_ctc_to_fairseq(hf.state_dict(), False), "args": ns},
               tmp_path / "old.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_wav2vec2_ctc(tmp_path / "old.pt")
    sha = sha256_file(tmp_path / "old.pt")
    with pytest.raises(FileNotFoundError, match="dict.ltr.txt"):
        load_wav2vec2_ctc(tmp_path / "old.pt", trusted_sha256=sha)
    (tmp_path / "letters.txt").write_text("".join(f"{t} 1\n" for t in LETTERS[4:]), "utf-8")
    b = make_asr("wav2vec2", model=str(tmp_path / "old.pt"), trust_sha256=sha,
                 dict_path=str(tmp_path / "letters.txt"), device="cpu")
    b.load()
    wav = (0.3 * np.random.default_rng(2).standard_normal(12000)).astype(np.float32)
    with torch.no_grad():
        ids = hf(torch.from_numpy(wav)[None]).logits[0].argmax(-1).tolist()
    expected = "".join(" " if LETTERS[i] == "|" else LETTERS[i] for i in ctc_greedy(ids, 0) if i > 3)
    assert b.transcribe(wav) == " ".join(expected.split()).lower()
    assert b.settings()["model"] == "file:old.pt" and b.settings()["weights_sha256"] == sha
