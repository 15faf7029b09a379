"""Intelligibility metrics (asr group): pooling, jiwer agreement, pocketsphinx, whisper, phones."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import urllib.request
from dataclasses import asdict, dataclass

import numpy as np
import pytest

from resyn_bench.audio import Audio, resample
from resyn_bench.metrics.asr import (
    ASRBackend,
    ModelMissingError,
    PocketsphinxBackend,
    TextNormalizer,
    basic_normalize,
    make_asr,
)
from resyn_bench.metrics.intelligibility import IntelligibilityMetrics
from resyn_bench.metrics.phones import ARPABET, PhoneLexicon, default_lexicon, ipa_to_arpabet, text_to_phones

SENTENCE = "The birch canoe slid on the smooth planks."


@dataclass
class Utt:
    utt_id: str
    text: str | None = None
    speaker: str = "s"


class FakeASR(ASRBackend):
    """Returns fixed transcripts/phones, chosen by the number of samples of the input."""

    name = "fake"
    supports_phones = True

    def __init__(self, words: dict[int, str], phones: dict[int, str] | None = None):
        self.words, self.phone_table = words, phones or {}
        self.loaded = False

    def settings(self):
        return {"backend": self.name}

    def load(self):
        self.loaded = True

    def release(self):
        self.loaded = False

    def transcribe(self, samples_16k):
        return self.words[len(samples_16k)]

    def phones(self, samples_16k):
        return self.phone_table.get(len(samples_16k), "").split()


def audio_of(n: int) -> Audio:
    return Audio(np.full(n, 0.1, dtype=np.float32), 16000)


def entry(score, utt_id="u"):
    return {"utt_id": utt_id, "speaker": "s", "values": score.values, "counts": score.counts,
            "extra": score.extra}


# ------------------------------------------------------------------------------------------
# pooling and jiwer agreement (fake recogniser: fast, exact)
# ------------------------------------------------------------------------------------------

def test_pooled_wer_is_not_the_mean_of_rates():
    asr = FakeASR({1600: "a b c d e f g h i k", 1601: "p q"})
    g = IntelligibilityMetrics(backend=asr, per=False, normalizer="basic")
    g.load()
    assert asr.loaded
    s1 = g.score({}, audio_of(1600), Utt("u1", "A b c d e f g h i j."))
    s2 = g.score({}, audio_of(1601), Utt("u2", "x y"))
    assert s1.values["asr.wer"] == pytest.approx(0.1)
    assert s2.values["asr.wer"] == pytest.approx(1.0)
    pooled = g.aggregate([entry(s1, "u1"), entry(s2, "u2")])
    assert pooled["asr.wer"] == pytest.approx(3 / 12)
    mean = np.mean([s1.values["asr.wer"], s2.values["asr.wer"]])
    assert mean == pytest.approx(0.55) and pooled["asr.wer"] != pytest.approx(mean)
    assert s1.counts["word_sub"] == 1 and s1.counts["ref_words"] == 10
    assert s2.counts["word_edits"] == 2 and s2.counts["ref_words"] == 2
    # an utterance's value is the pool of its own counts
    assert g.pool(s1.counts)["asr.wer"] == pytest.approx(s1.values["asr.wer"])
    assert "asr.per" not in pooled and set(pooled) == {s.key for s in g.specs}
    g.release()
    assert not asr.loaded


@pytest.mark.parametrize("normalizer", ["basic", "whisper-en"])
def test_corpus_wer_and_cer_equal_jiwer_on_the_normalised_strings(normalizer):
    jiwer = pytest.importorskip("jiwer")
    if normalizer == "whisper-en":
        pytest.importorskip("whisper")
    cases = [("The birch canoe slid on the smooth planks.",
              "the birch canoe slid on smooth planks"),
             ("Glue the sheet to the dark blue background.",
              "glue the sheep to the dark blue back ground"),
             ("It's easy to tell the depth of a well.", ""),
             ("Rice is often served in round bowls.",
              "rice rice is often served in round bowls ok"),
             # empty after normalisation (whisper-en drops fillers; bracketed words are kept)
             ("Um, uh.", "hello there"),
             ("Five thick slabs", "5 thick slabs")]
    words = {1000 + i: hyp for i, (_, hyp) in enumerate(cases)}
    g = IntelligibilityMetrics(backend=FakeASR(words), per=False, normalizer=normalizer)
    assert g.settings()["normalizer"] == normalizer
    scores = [g.score({}, audio_of(1000 + i), Utt(f"u{i}", ref))
              for i, (ref, _) in enumerate(cases)]
    refs = [s.extra["ref"] for s in scores]
    hyps = [s.extra["hyp"] for s in scores]
    pooled = g.aggregate([entry(s) for s in scores])
    assert pooled["asr.wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert pooled["asr.cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    for s in scores:
        if s.extra["ref"]:
            assert s.values["asr.wer"] == pytest.approx(jiwer.wer(s.extra["ref"], s.extra["hyp"]))
    norm = TextNormalizer(normalizer)
    assert refs[0] == norm(cases[0][0]) and hyps[1] == norm(cases[1][1])
    if normalizer == "whisper-en":
        assert refs[5] == hyps[5] == "5 thick slabs"      # numbers normalised on both sides
        empty = scores[4]
        assert empty.extra["ref"] == ""
        # empty reference: undefined rate, insertions still counted (and pooled)
        assert empty.values["asr.wer"] is None and empty.values["asr.cer"] is None
        assert empty.counts["ref_words"] == 0
        assert empty.counts["word_edits"] == empty.counts["word_ins"] == 2


def test_empty_corpus_and_all_empty_references_pool_to_none():
    g = IntelligibilityMetrics(backend=FakeASR({10: "a b"}), per=False, normalizer="basic")
    assert g.aggregate([]) == {"asr.wer": None, "asr.cer": None}
    s = g.score({}, audio_of(10), Utt("u", "!!!"))
    assert s.values == {"asr.wer": None, "asr.cer": None}
    assert g.aggregate([entry(s)]) == {"asr.wer": None, "asr.cer": None}


def test_differential_mode_specs_counts_and_cacheable_reference():
    asr = FakeASR({100: "hello world", 200: "hello word"},
                  {100: "HH AH L OW W ER L D", 200: "HH AH L OW W ER D"})
    g = IntelligibilityMetrics(backend=asr, mode="differential", normalizer="basic")
    assert not g.needs_text
    assert [s.key for s in g.specs] == ["asr.dwer", "asr.dcer", "asr.dper"]
    assert all(not s.higher_is_better and s.percent for s in g.specs)
    ref = g.analyse_reference(audio_of(100))
    for arr in ref.values():             # strings as 0-d unicode arrays, no object arrays
        assert isinstance(arr, np.ndarray) and arr.ndim == 0 and arr.dtype.kind == "U"
    assert str(ref["transcript"]) == "hello world"
    same = g.score(ref, audio_of(100), Utt("u", None))
    assert same.values == {"asr.dwer": 0.0, "asr.dcer": 0.0, "asr.dper": 0.0}
    diff = g.score(ref, audio_of(200), Utt("u", None))
    assert diff.values["asr.dwer"] == pytest.approx(0.5)
    assert diff.values["asr.dper"] == pytest.approx(1 / 8)
    assert diff.counts["dword_edits"] == 1 and diff.counts["dref_phones"] == 8
    assert diff.extra["ref_phones"] == "HH AH L OW W ER L D"
    assert g.aggregate([entry(same), entry(diff)])["asr.dwer"] == pytest.approx(1 / 4)
    # text mode: specs, needs_text, empty reference analysis
    t = IntelligibilityMetrics(backend=asr, normalizer="basic")
    assert t.needs_text and [s.key for s in t.specs] == ["asr.wer", "asr.cer", "asr.per"]
    assert t.analyse_reference(audio_of(100)) == {}
    with pytest.raises(ValueError):
        IntelligibilityMetrics(backend=asr, mode="both")


def test_text_mode_per_and_extra_with_lexicon_reference():
    asr = FakeASR({100: "hello blorptish"}, {100: "HH EH L OW"})
    g = IntelligibilityMetrics(backend=asr, normalizer="basic")
    s = g.score({}, audio_of(100), Utt("u", "Hello, blorptish!"))
    assert s.extra["hyp"] == "hello blorptish" and s.extra["ref"] == "hello blorptish"
    assert s.values["asr.wer"] == 0.0
    assert s.extra["oov"] == ["blorptish"] and s.counts["oov_words"] == 1
    ref_phones = s.extra["ref_phones"].split()
    assert ref_phones[:4] in (["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"])
    assert set(ref_phones) <= ARPABET and len(ref_phones) > 4
    assert s.extra["hyp_phones"] == "HH EH L OW"
    assert s.counts["ref_phones"] == len(ref_phones)
    assert s.values["asr.per"] == pytest.approx(s.counts["phone_edits"] / len(ref_phones))
    json.dumps(s.extra), json.dumps(g.settings())


def test_constructor_is_cheap_and_backends_are_chosen_by_name():
    g = IntelligibilityMetrics(backend="pocketsphinx")
    assert isinstance(g.backend, PocketsphinxBackend) and g.backend._words is None
    assert g.per_source == "recognizer"
    s = g.settings()
    assert s["backend"]["backend"] == "pocketsphinx" and s["mode"] == "text"
    assert s["versions"]["jiwer"]
    json.dumps(s)
    with pytest.raises(ValueError):
        make_asr("nope")
    with pytest.raises(ValueError):
        make_asr("pocketsphinx", model="x")
    assert basic_normalize("Hello,  World! It's  'quoted' — ok") == "hello world it's quoted ok"


# ------------------------------------------------------------------------------------------
# pocketsphinx (real decoding of espeak speech)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def speech():
    pytest.importorskip("pocketsphinx")
    from resyn_bench.demo_corpus import synthesize

    a = synthesize(SENTENCE, voice="en-us+m3")
    b = synthesize("Glue the sheet to the dark blue background.", voice="en-us+f3")
    return [Audio(np.asarray(resample(x.samples, x.sample_rate, 16000), dtype=np.float32), 16000)
            for x in (a, b)]


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx")
    b = make_asr("pocketsphinx")
    b.load()
    yield b
    b.release()


def test_pocketsphinx_words_and_phones(speech, sphinx):
    a, b = speech
    text = sphinx.transcribe(a.samples)
    assert isinstance(text, str) and text.strip()
    assert not any(t.startswith(("<", "[", "+")) or "(" in t for t in text.split())
    phones = sphinx.phones(a.samples)
    assert phones and set(phones) <= ARPABET          # SIL and fillers removed
    # decoders are reused: another utterance in between does not change the result
    sphinx.transcribe(b.samples)
    assert sphinx.transcribe(a.samples) == text
    assert sphinx.phones(a.samples) == phones


def test_pocketsphinx_differential_identical_audio_scores_zero(speech, sphinx):
    a, _ = speech
    g = IntelligibilityMetrics(backend=sphinx, mode="differential")
    ref = g.analyse_reference(a)
    assert str(ref["transcript"]).strip() and str(ref["phones"]).strip()
    s = g.score(ref, a, Utt("u"))
    assert s.values["asr.dwer"] == 0.0 and s.values["asr.dper"] == 0.0
    assert s.values["asr.dcer"] == 0.0
    # text mode on the same audio: a real (poor) WER and the texts for the report
    t = IntelligibilityMetrics(backend=sphinx)
    st = t.score({}, a, Utt("u", SENTENCE))
    assert st.values["asr.wer"] is not None and st.values["asr.wer"] >= 0
    assert st.extra["ref"] == TextNormalizer()(SENTENCE)
    assert set(st.extra["hyp_phones"].split()) <= ARPABET
    with pytest.raises(Exception, match="16000"):
        t.score({}, Audio(a.samples, 22050), Utt("u", SENTENCE))


# ------------------------------------------------------------------------------------------
# whisper: tiny random checkpoint, missing weights
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("whisper")
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=1, n_text_layer=1)
    path = tmp_path_factory.mktemp("whisper") / "tiny-random.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def test_whisper_tiny_random_checkpoint_is_deterministic(tiny_whisper):
    # sample_len caps tokens per 30 s window: a random model rarely emits end-of-text
    asr = make_asr("whisper", model=str(tiny_whisper), sample_len=16, device="cpu")
    assert not asr.supports_phones
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(24000) / 16000)).astype(np.float32)
    first = asr.transcribe(x)
    assert isinstance(first, str)
    assert asr.transcribe(x) == first
    s = asr.settings()
    assert s["checkpoint_sha256"] == hashlib.sha256(tiny_whisper.read_bytes()).hexdigest()
    assert s["model"] == "file:tiny-random.pt" and s["temperature"] == 0.0 and s["fp16"] is False
    with pytest.raises(NotImplementedError):
        asr.phones(x)
    # through the group: PER falls back to the lexicon phones of the recognised words
    g = IntelligibilityMetrics(backend="whisper", model=str(tiny_whisper), sample_len=16,
                               device="cpu")
    assert g.per_source == "transcript"
    g.load()
    sc = g.score({}, Audio(x, 16000), Utt("u", "hello world"))
    assert isinstance(sc.extra["hyp"], str) and sc.extra["ref"] == "hello world"
    assert set(sc.extra["hyp_phones"].split()) <= ARPABET
    assert sc.extra["ref_phones"] in ("HH AH L OW W ER L D", "HH EH L OW W ER L D")
    json.dumps(g.settings())
    g.release()


def test_missing_whisper_weights_name_url_and_path_and_never_download(home, tmp_path,
                                                                      monkeypatch):
    pytest.importorskip("whisper")
    import whisper

    def no_network(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    url = whisper._MODELS["base.en"]
    # default root: $RESYN_BENCH_HOME/models/whisper
    asr = make_asr("whisper", model="base.en")
    target = home / "models" / "whisper" / "base.en.pt"
    with pytest.raises(ModelMissingError) as err:
        asr.load()
    assert url in str(err.value) and str(target) in str(err.value)
    assert err.value.url == url and err.value.path == target
    assert not (home / "models").exists()
    # explicit empty root, through the group
    root = tmp_path / "empty"
    g = IntelligibilityMetrics(backend="whisper", model="base.en", download_root=str(root))
    with pytest.raises(ModelMissingError, match="never downloads"):
        g.load()
    assert g.settings()["backend"]["checkpoint_sha256"] == url.split("/")[-2]
    # a file with the wrong hash is refused (whisper itself would re-download it)
    root.mkdir()
    (root / "base.en.pt").write_bytes(b"not a model")
    with pytest.raises(ModelMissingError, match="SHA-256"):
        g.load()
    with pytest.raises(ModelMissingError, match="not found"):
        make_asr("whisper", model=str(tmp_path / "nope.pt")).load()
    with pytest.raises(ModelMissingError, match="known model name"):
        make_asr("openai-whisper", model="enormous.en").load()
    # through the default (faster-whisper) loader, the error names both kinds of model
    if importlib.util.find_spec("faster_whisper"):
        with pytest.raises(ModelMissingError, match="neither a known name"):
            make_asr("whisper", model="enormous.en").load()


# ------------------------------------------------------------------------------------------
# phones
# ------------------------------------------------------------------------------------------

def test_dictionary_phones_without_stress():
    phones, oov = text_to_phones("Hello, world!")
    assert phones[:4] in (["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"])
    assert phones[4:] == ["W", "ER", "L", "D"] and oov == []
    assert all(not any(c.isdigit() for c in p) for p in phones)


def test_stressed_dictionary_and_first_pronunciation(tmp_path):
    d = tmp_path / "stressed.dict"
    d.write_text("hello HH AH0 L OW1\nhello(2) HH EH0 L OW1\n'em AH0 M\n", encoding="utf-8")
    lex = PhoneLexicon(d, g2p=False)
    conv = lex.convert("HELLO 'em 'hello' blorptish")
    assert conv.phones == ["HH", "AH", "L", "OW", "AH", "M", "HH", "AH", "L", "OW"]
    assert conv.oov_words == ["blorptish"] and conv.skipped == ["blorptish"]


def test_oov_word_goes_through_g2p_into_arpabet():
    pytest.importorskip("phonemizer")
    conv = default_lexicon().convert("blorptish")
    assert conv.oov_words == ["blorptish"] and conv.skipped == [] and conv.unmapped == []
    assert conv.phones and set(conv.phones) <= ARPABET
    assert conv.phones[:3] == ["B", "L", "AO"]


def test_g2p_unavailable_skips_and_reports(monkeypatch):
    from resyn_bench.metrics import phones as ph

    def broken(self):
        raise ph.G2PUnavailable("phonemizer is not installed")

    monkeypatch.setattr(ph.EspeakG2P, "_load", broken)
    lex = PhoneLexicon()
    conv = lex.convert("hello zzyzxqu")
    assert conv.skipped == ["zzyzxqu"] and conv.oov_words == ["zzyzxqu"]
    assert conv.phones[:1] == ["HH"] and lex.g2p_error


def test_ipa_table():
    assert ipa_to_arpabet("tʃ") == ["CH"] and ipa_to_arpabet("dʒ") == ["JH"]
    assert ipa_to_arpabet("aɪɚ") == ["AY", "ER"]
    assert ipa_to_arpabet("ɔːɹ") == ["AO", "R"]
    assert ipa_to_arpabet("n̩") == ["AH", "N"]
    assert ipa_to_arpabet("t͡ʃ") == ["CH"]
    assert [ipa_to_arpabet(x) for x in ("aʊ", "ɔɪ", "eɪ", "oʊ", "ɝ", "ɹ", "ŋ", "ɡ")] == \
        [["AW"], ["OY"], ["EY"], ["OW"], ["ER"], ["R"], ["NG"], ["G"]]
    bad: set[str] = set()
    assert ipa_to_arpabet("ʘa", bad) == ["AE"] and bad == {"ʘ"}
    assert {p for v in __import__("resyn_bench.metrics.phones", fromlist=["x"])
            .IPA_TO_ARPABET.values() for p in v} <= ARPABET


def test_pocketsphinx_results_do_not_depend_on_the_previous_utterance():
    """Decoder state (cepstral mean) must not leak between utterances."""
    from resyn_bench.audio import resample
    from resyn_bench.demo_corpus import synthesize
    from resyn_bench.metrics.asr import PocketsphinxBackend

    def speech(text, voice):
        a = synthesize(text, voice=voice)
        return resample(a.samples, a.sample_rate, 16000)

    x = speech("Glue the sheet to the dark blue background.", "en-us+m3")
    y = speech("A large size in stockings is hard to sell.", "en-us+f3")
    b = PocketsphinxBackend()
    b.load()
    alone = (b.phones(x), b.transcribe(x))
    b.phones(y), b.transcribe(y)
    after_other = (b.phones(x), b.transcribe(x))
    assert after_other == alone
