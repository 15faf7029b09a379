"""Speaker-identity metrics: EER/minDCF known answers, fold protocol, real embeddings."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from resyn_bench.audio import Audio, resample
from resyn_bench.metrics.base import MetricError
from resyn_bench.metrics.speaker import (
    SpeakerEncoder,
    SpeakerMetrics,
    assign_folds,
    cosine,
    eer,
    error_rates,
    make_encoder,
    min_dcf,
)


@dataclass(frozen=True)
class Utt:
    utt_id: str
    speaker: str
    target_speaker: str | None = None


# --------------------------------------------------------------------------------------------
# EER / minDCF / cosine
# --------------------------------------------------------------------------------------------

def test_eer_perfect_separation_is_zero():
    rate, theta = eer([0.8, 0.9, 0.95], [0.1, 0.2, 0.3, 0.5])
    assert rate == 0.0
    assert 0.5 < theta <= 0.8
    assert min_dcf([0.8, 0.9, 0.95], [0.1, 0.2, 0.3, 0.5]) == 0.0


def test_eer_identical_scores_is_half():
    assert eer([0.7] * 5, [0.7] * 9)[0] == pytest.approx(0.5)
    # identical distributions (same multiset of scores on both sides)
    s = [0.1, 0.3, 0.5, 0.9]
    assert eer(s, s)[0] == pytest.approx(0.5)
    # only the trivial systems remain: normalised minDCF = 1
    assert min_dcf([0.7] * 5, [0.7] * 9, p_target=0.01) == pytest.approx(1.0)


def test_eer_hand_worked_interpolation():
    # tar = {0.5, 0.8}, non = {0.2, 0.5, 0.5, 0.5}; operating points (θ: FAR, FRR):
    #   0.2: 1, 0   0.5: 3/4, 0   0.8: 0, 1/2   +inf: 0, 1
    # FAR - FRR goes from +3/4 (θ=0.5) to -1/2 (θ=0.8): t = 0.75 / 1.25 = 0.6,
    # EER = 3/4 + 0.6 (0 - 3/4) = 0.3 = 0 + 0.6 (1/2 - 0); θ = 0.5 + 0.6 * 0.3 = 0.68.
    tar, non = [0.5, 0.8], [0.2, 0.5, 0.5, 0.5]
    thr, far, frr = error_rates(tar, non)
    np.testing.assert_allclose(thr, [0.2, 0.5, 0.8, np.inf])
    np.testing.assert_allclose(far, [1, 0.75, 0, 0])
    np.testing.assert_allclose(frr, [0, 0, 0.5, 1])
    rate, theta = eer(tar, non)
    assert rate == pytest.approx(0.3)
    assert theta == pytest.approx(0.68)
    # exact crossing at a point: tar = {0.2, 0.6, 0.9}, non = {0.1, 0.4, 0.7}: θ = 0.6 gives 1/3, 1/3
    assert eer([0.2, 0.6, 0.9], [0.1, 0.4, 0.7]) == pytest.approx((1 / 3, 0.6))
    # minDCF, p = 0.5: min over θ of (FRR + FAR) = 0.5 (θ = 0.8)
    assert min_dcf(tar, non, p_target=0.5) == pytest.approx(0.5)
    # p = 0.25: DCF/0.25 at θ = 0.8: 0.25*0.5/0.25 = 0.5; at θ = 0.5: 0.75*0.75/0.25 = 2.25
    assert min_dcf(tar, non, p_target=0.25) == pytest.approx(0.5)
    # costs: c_miss = 2, p = 0.5: norm = min(1, 0.5) = 0.5; θ=0.8: (2*.5*.5 + 0)/.5 = 1;
    # θ=0.2: (0 + .5*1)/.5 = 1; θ=0.5: .5*.75/.5 = 0.75 -> 0.75
    assert min_dcf(tar, non, p_target=0.5, c_miss=2.0) == pytest.approx(0.75)


def test_eer_crossing_beyond_largest_score():
    rate, theta = eer([1.0], [1.0])
    assert rate == pytest.approx(0.5) and theta == 1.0
    assert eer([0.0], [1.0]) == (1.0, 1.0)     # fully inverted scores


def test_eer_and_min_dcf_match_independent_computation():
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    for n_tar, n_non, shift in [(200, 2000, 1.5), (50, 400, 0.3), (1000, 1000, 3.0)]:
        tar = rng.normal(shift, 1.0, n_tar)
        non = rng.normal(0.0, 1.0, n_non)
        labels = np.r_[np.ones(n_tar), np.zeros(n_non)]
        fpr, tpr, _ = roc_curve(labels, np.r_[tar, non], drop_intermediate=False)
        ref = brentq(lambda x, fpr=fpr, tpr=tpr: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
        assert eer(tar, non)[0] == pytest.approx(ref, abs=1e-9)
        # brute-force minDCF over every candidate threshold
        best = np.inf
        for th in np.r_[np.sort(np.r_[tar, non]), np.inf]:
            p_miss, p_fa = np.mean(tar < th), np.mean(non >= th)
            best = min(best, 0.01 * p_miss + 0.99 * p_fa)
        assert min_dcf(tar, non, 0.01) == pytest.approx(best / 0.01)


def test_eer_rejects_bad_input():
    with pytest.raises(ValueError):
        eer([], [0.1])
    with pytest.raises(ValueError):
        eer([np.nan], [0.1])
    with pytest.raises(ValueError):
        min_dcf([0.1], [0.2], p_target=0.0)


def test_cosine():
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine([1, 0], [-3, 0]) == pytest.approx(-1.0)
    assert cosine([3, 4], [4, 3]) == pytest.approx(24 / 25)
    with pytest.raises(ValueError):
        cosine([0, 0], [1, 0])


# --------------------------------------------------------------------------------------------
# Folds and protocol logic (fake embeddings: the output's samples are its embedding)
# --------------------------------------------------------------------------------------------

def test_assign_folds_stratified_and_deterministic():
    ids = [f"{s}_{k}" for s in "abc" for k in range(7)] + ["d_0"]
    spk = [i.split("_")[0] for i in ids]
    f1 = assign_folds(ids, spk, 5, seed=3)
    assert f1 == assign_folds(list(reversed(ids)), list(reversed(spk)), 5, seed=3)
    assert f1 != assign_folds(ids, spk, 5, seed=4)
    assert f1["d_0"] == -1                        # single utterance: enrolment-only
    sizes = np.bincount([f for f in f1.values() if f >= 0], minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for s in "abc":                               # every fold leaves training data of s
        folds_s = [f1[i] for i in ids if i.startswith(s)]
        assert len(set(folds_s)) == 5
    two = assign_folds(["x1", "x2", "y1", "y2"], ["x", "x", "y", "y"], 5)
    assert two["x1"] != two["x2"] and two["y1"] != two["y2"]


class FakeEncoder(SpeakerEncoder):
    name = "fake"

    def settings(self):
        return {"backend": "fake"}

    def load(self):
        pass

    def release(self):
        pass

    def embed(self, samples_16k):
        x = np.asarray(samples_16k, dtype=np.float64)
        return (x / np.linalg.norm(x)).astype(np.float32)


def fake_group(**kw) -> SpeakerMetrics:
    g = SpeakerMetrics(**kw)
    g.encoder = FakeEncoder()
    return g


def fake_corpus(n_spk=3, n_utt=4, dim=8, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_spk, dim))
    utts, vecs = [], {}
    for s in range(n_spk):
        for k in range(n_utt):
            u = Utt(f"s{s}_{k}", f"s{s}")
            utts.append(u)
            vecs[u.utt_id] = (centres[s] + noise * rng.normal(size=dim)).astype(np.float32)
    return utts, vecs


def drive(group, utts, ref_audio, out_audio):
    refs = {u.utt_id: group.analyse_reference(ref_audio[u.utt_id]) for u in utts}
    group.fit_corpus(utts, refs)
    entries = []
    for u in utts:
        s = group.score(refs[u.utt_id], out_audio[u.utt_id], u)
        entries.append({"utt_id": u.utt_id, "speaker": u.speaker, "values": s.values,
                        "counts": s.counts, "extra": s.extra})
    return entries, group.aggregate(entries)


@pytest.mark.parametrize("classifier", ["logreg", "centroid"])
def test_fake_copy_and_swap(classifier):
    utts, vecs = fake_corpus()
    audio = {k: Audio(v, 16000) for k, v in vecs.items()}
    g = fake_group(classifier=classifier, folds=4)
    entries, agg = drive(g, utts, audio, audio)
    assert agg["spk.acc"] == 1.0 and agg["spk.eer"] == 0.0 and agg["spk.min_dcf"] == 0.0
    assert agg["spk.chance"] == pytest.approx(1 / 3)
    assert agg["spk.n_target_trials"] == 12 and agg["spk.n_nontarget_trials"] == 24
    e = entries[0]
    assert e["values"]["spk.cos_ref"] == pytest.approx(1.0)
    assert set(e["extra"]["trials"]) == {"s0", "s1", "s2"}
    json.dumps(e["extra"])
    # held out: the centroid of the utterance's own speaker excludes it, so cos < 1
    assert e["values"]["spk.cos_centroid"] < 1.0
    # outputs = the next speaker's recording of the same index
    swapped = {u.utt_id: audio[f"s{(int(u.speaker[1]) + 1) % 3}_{u.utt_id.split('_')[1]}"]
               for u in utts}
    _, agg2 = drive(fake_group(classifier=classifier, folds=4), utts, audio, swapped)
    assert agg2["spk.acc"] == 0.0 and agg2["spk.eer"] > 0.4


def test_held_out_models_exclude_the_scored_utterance():
    # one far-off utterance per speaker: if it were in its own training set, cos_centroid
    # would be pulled towards it
    utts, vecs = fake_corpus(n_spk=2, n_utt=5, noise=0.0)
    g = fake_group(folds=5)
    refs = {k: {"embedding": v} for k, v in vecs.items()}
    g.fit_corpus(utts, refs)
    for u in utts:
        fold, model = g._model_for(u.utt_id)
        c = model.centroids[model.index[u.speaker]]
        others = [w for w in utts if w.speaker == u.speaker and g._fold_of[w.utt_id] != fold]
        expected = np.mean([vecs[w.utt_id] / np.linalg.norm(vecs[w.utt_id]) for w in others], 0)
        np.testing.assert_allclose(c, expected / np.linalg.norm(expected), atol=1e-6)


def test_target_speaker_override():
    utts, vecs = fake_corpus()
    audio = {k: Audio(v, 16000) for k, v in vecs.items()}
    g = fake_group(classifier="centroid")
    refs = {u.utt_id: g.analyse_reference(audio[u.utt_id]) for u in utts}
    g.fit_corpus(utts, refs)
    u = utts[0]                                     # speaker s0, output = its own recording
    plain = g.score(refs[u.utt_id], audio[u.utt_id], u)
    assert plain.extra["target"] == "s0" and plain.values["spk.acc"] == 1.0
    same = g.score(refs[u.utt_id], audio[u.utt_id], Utt(u.utt_id, u.speaker, None))
    assert same.extra["target"] == "s0"
    vc = g.score(refs[u.utt_id], audio[u.utt_id], Utt(u.utt_id, u.speaker, "s2"))
    assert vc.extra["target"] == "s2" and vc.extra["predicted"] == "s0"
    assert vc.values["spk.acc"] == 0.0
    assert vc.values["spk.cos_centroid"] == pytest.approx(vc.extra["trials"]["s2"])
    assert vc.values["spk.cos_ref"] == pytest.approx(plain.values["spk.cos_ref"])
    # the target trial moves to s2's model
    agg = g.aggregate([{"counts": vc.counts, "extra": vc.extra}])
    assert agg["spk.n_target_trials"] == 1 and agg["spk.n_nontarget_trials"] == 2
    with pytest.raises(MetricError, match="target speaker"):
        g.score(refs[u.utt_id], audio[u.utt_id], Utt(u.utt_id, u.speaker, "nobody"))


def test_fewer_than_two_speakers():
    utts, vecs = fake_corpus(n_spk=1)
    g = fake_group()
    with pytest.raises(MetricError, match=">= 2"):
        g.fit_corpus(utts, {k: {"embedding": v} for k, v in vecs.items()})
    with pytest.raises(MetricError):
        g.fit_corpus([], {})


def test_single_utterance_speaker_is_enrolment_only():
    utts, vecs = fake_corpus(n_spk=2, n_utt=3)
    lone = Utt("lone_0", "lone")
    vecs["lone_0"] = np.ones(8, dtype=np.float32)
    g = fake_group(classifier="centroid")
    refs = {k: {"embedding": v} for k, v in vecs.items()}
    g.fit_corpus(utts + [lone], refs)
    assert all("lone" in m.index for m in g._models.values())   # a non-target everywhere
    with pytest.raises(MetricError, match="enrolment-only"):
        g.score(refs["lone_0"], Audio(vecs["lone_0"], 16000), lone)
    s = g.score(refs["s0_0"], Audio(vecs["s0_0"], 16000), utts[0])
    assert set(s.extra["trials"]) == {"s0", "s1", "lone"}
    # only single-utterance speakers: nothing can be held out
    with pytest.raises(MetricError, match="single"):
        g.fit_corpus([Utt("a", "A"), Utt("b", "B")],
                     {"a": {"embedding": np.ones(8)}, "b": {"embedding": np.arange(8.0)}})


def test_utterance_outside_corpus_uses_full_model():
    utts, vecs = fake_corpus()
    g = fake_group()
    refs = {k: {"embedding": v} for k, v in vecs.items()}
    g.fit_corpus(utts, refs)
    s = g.score(refs["s1_0"], Audio(vecs["s1_0"], 16000), Utt("new", "s1"))
    assert s.extra["fold"] is None and s.values["spk.acc"] == 1.0


def test_aggregate_pure_and_undefined_cases():
    g = SpeakerMetrics()
    assert g.aggregate([]) == {"spk.acc": None, "spk.eer": None, "spk.min_dcf": None,
                               "spk.chance": None, "spk.n_target_trials": 0.0,
                               "spk.n_nontarget_trials": 0.0, "spk.source_acc": None,
                               "spk.source_eer": None}
    entries = [
        {"counts": {"correct": 1.0, "trials": 1.0},
         "extra": {"target": "a", "trials": {"a": 0.9, "b": 0.2, "c": 0.1}}},
        {"counts": {"correct": 0.0, "trials": 1.0},
         "extra": {"target": "b", "trials": {"a": 0.8, "b": 0.5, "c": 0.5}}},
        {"status": "failed"},
    ]
    agg = g.aggregate(entries)
    assert agg["spk.acc"] == 0.5 and agg["spk.chance"] == pytest.approx(1 / 3)
    assert agg["spk.n_target_trials"] == 2 and agg["spk.n_nontarget_trials"] == 4
    # tar {0.9, 0.5}, non {0.2, 0.1, 0.8, 0.5}: hand-worked like above
    assert agg["spk.eer"] == pytest.approx(eer([0.9, 0.5], [0.2, 0.1, 0.8, 0.5])[0])
    assert g.aggregate(entries) == agg
    assert agg["spk.source_acc"] is None and agg["spk.source_eer"] is None   # no conversion
    # voice conversion: the second output (target b) came from speaker a and was taken for a;
    # source trials are those of converted outputs only, with the source as claimed identity
    entries[1]["extra"]["source"] = "a"
    entries[1]["counts"].update(source_correct=1.0, source_trials=1.0)
    agg = g.aggregate(entries)
    assert agg["spk.source_acc"] == 1.0 and agg["spk.acc"] == 0.5
    assert agg["spk.source_eer"] == pytest.approx(eer([0.8], [0.5, 0.5])[0]) == 0.0
    assert agg["spk.eer"] == pytest.approx(eer([0.9, 0.5], [0.2, 0.1, 0.8, 0.5])[0])


def test_constructor_is_cheap_and_validates():
    g = SpeakerMetrics()
    assert g.encoder._model is None
    assert g.needs_corpus and g.sample_rate == 16000 and g.name == "spk"
    assert {s.key for s in g.specs} >= {"spk.acc", "spk.eer", "spk.min_dcf", "spk.cos_ref",
                                        "spk.cos_centroid", "spk.chance"}
    s = g.settings()
    json.dumps(s)
    assert s["classifier"] == "logreg" and s["folds"] == 5 and s["encoder"]["version"] == "0.1.4"
    assert "target_speaker" in s["protocol"]
    for bad in [dict(classifier="svm"), dict(folds=1), dict(p_target=1.0), dict(backend="x")]:
        with pytest.raises(ValueError):
            SpeakerMetrics(**bad)
    with pytest.raises(ValueError):
        make_encoder("nope")


# --------------------------------------------------------------------------------------------
# Real embeddings (Resemblyzer) on four espeak-ng voices
# --------------------------------------------------------------------------------------------

VOICES = [("us_m3", "en-us+m3", 150, 40), ("us_f3", "en-us+f3", 165, 60),
          ("rp_m1", "en-gb-x-rp+m1", 140, 48), ("sc_f4", "en-gb-scotland+f4", 172, 55)]
SENTENCES = ["The birch canoe slid on the smooth planks.",
             "Glue the sheet to the dark blue background.",
             "It's easy to tell the depth of a well.",
             "These days a chicken leg is a rare dish.",
             "Rice is often served in round bowls."]


@pytest.fixture(scope="module")
def espeak_corpus(tmp_path_factory):
    import torch

    from resyn_bench.demo_corpus import synthesize

    # one torch thread: on a busy 2-core box, 2 spinning threads made embedding ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESYN_BENCH_HOME", str(tmp_path_factory.mktemp("home")))
        utts, audio = [], {}
        for spk, voice, rate, pitch in VOICES:
            for k, text in enumerate(SENTENCES):
                a = synthesize(text, voice=voice, rate=rate, pitch=pitch)
                u = Utt(f"{spk}_{k}", spk)
                utts.append(u)
                audio[u.utt_id] = Audio(resample(a.samples, a.sample_rate, 16000), 16000)
        group = SpeakerMetrics()
        group.load()
        refs = {u.utt_id: group.analyse_reference(audio[u.utt_id]) for u in utts}
        yield utts, audio, refs, group
        group.release()
    torch.set_num_threads(threads)


def run_real(group, utts, refs, outputs):
    group.fit_corpus(utts, refs)
    entries = []
    for u in utts:
        s = group.score(refs[u.utt_id], outputs[u.utt_id], u)
        entries.append({"utt_id": u.utt_id, "speaker": u.speaker, "values": s.values,
                        "counts": s.counts, "extra": s.extra})
    return entries, group.aggregate(entries)


@pytest.mark.parametrize("classifier", ["logreg", "centroid"])
def test_real_embeddings_copy_vs_other_speaker(espeak_corpus, classifier):
    utts, audio, refs, group = espeak_corpus
    group.classifier = classifier
    try:
        emb = refs[utts[0].utt_id]["embedding"]
        assert emb.dtype == np.float32 and emb.shape == (256,)
        assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
        # (a) outputs = the references themselves
        entries, copy = run_real(group, utts, refs, audio)
        print(f"\n[{classifier}] copy: {copy}")
        assert copy["spk.acc"] >= 0.75
        # espeak's en-us+m3 and en-gb-x-rp+m1 are close for Resemblyzer (cosine ~0.87
        # across vs ~0.9 within): 2/20 copies go to the other male voice, EER 0.15
        assert copy["spk.eer"] <= 0.25
        assert copy["spk.chance"] == 0.25
        assert copy["spk.n_target_trials"] == 20 and copy["spk.n_nontarget_trials"] == 60
        assert all(e["values"]["spk.cos_ref"] == pytest.approx(1.0, abs=1e-5) for e in entries)
        # (b) outputs = the next speaker's recording of the same sentence
        spks = [v[0] for v in VOICES]
        other = {u.utt_id: audio[f"{spks[(spks.index(u.speaker) + 1) % 4]}_{u.utt_id[-1]}"]
                 for u in utts}
        _, swap = run_real(group, utts, refs, other)
        print(f"[{classifier}] other speaker: {swap}")
        assert swap["spk.acc"] <= 0.1
        assert swap["spk.eer"] >= 0.4 and swap["spk.eer"] > copy["spk.eer"] + 0.25
    finally:
        group.classifier = "logreg"


def test_real_too_short_or_silent_output(espeak_corpus):
    _, _, _, group = espeak_corpus
    with pytest.raises(MetricError, match="silent"):
        group.analyse_reference(Audio(np.zeros(16000, dtype=np.float32), 16000))
    # quiet white noise: not speech for the VAD, nothing left after trimming
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with pytest.raises(MetricError, match="after VAD"):
        group.analyse_reference(Audio(noise, 16000))
    # a 60 ms voiced blip: VAD smoothing + dilation keep 0.3 s around it, so the default
    # 0.2 s passes it; a stricter min_speech_s refuses it
    from conftest import harmonic_tone
    blip = np.zeros(16000, dtype=np.float32)
    blip[8000:8960] = harmonic_tone(150.0, duration=0.06)
    assert group.analyse_reference(Audio(blip, 16000))["embedding"].shape == (256,)
    group.encoder.min_speech_s = 0.5
    try:
        with pytest.raises(MetricError, match=r"s of speech left after VAD"):
            group.analyse_reference(Audio(blip, 16000))
    finally:
        group.encoder.min_speech_s = 0.2
    with pytest.raises(MetricError, match="16000 Hz"):
        group.analyse_reference(Audio(np.zeros(22050, dtype=np.float32), 22050))


def test_a_backend_without_a_device_option_runs_on_cpu_and_refuses_an_accelerator(monkeypatch):
    """The runner forwards --device to every embedding backend; one that takes no device (a
    plugin, a test backend) is built without it on the CPU, and a request for an accelerator it
    cannot honour is an error naming the backend, not a silent CPU run."""
    from resyn_bench.metrics import speaker

    class NoDevice:
        def __init__(self, min_speech_s: float = 1.0):
            self.min_speech_s = min_speech_s

    monkeypatch.setitem(speaker._ENCODERS, "no-device", NoDevice)
    assert isinstance(speaker.make_encoder("no-device", device="cpu", min_speech_s=2.0), NoDevice)
    assert isinstance(speaker.make_encoder("no-device", device=None), NoDevice)
    with pytest.raises(ValueError, match="'no-device' has no device option.*cuda"):
        speaker.make_encoder("no-device", device="cuda")
    assert speaker.make_encoder("resemblyzer", device="cpu").device == "cpu"


def test_batched_embeddings_equal_one_call_per_utterance(espeak_corpus):
    # length-varied utterances (whole, a 1.2 s cut: fewer windows than the rest) and a silent one
    from resyn_bench.metrics.speaker import EMBED_BATCH_TOLERANCE

    utts, audio, refs, group = espeak_corpus
    signals = [audio[u.utt_id].samples for u in utts[:6]]
    signals[2] = signals[2][:int(1.2 * 16000)]
    signals.insert(3, np.zeros(16000, dtype=np.float32))
    single = []
    for x in signals:
        try:
            single.append(group.encoder.embed(x))
        except Exception as exc:
            single.append(exc)
    batched = group.encoder.embed_many(signals)
    assert isinstance(single[3], Exception) and isinstance(batched[3], Exception)
    assert str(batched[3]) == str(single[3])          # the silent one fails alone, same reason
    for one, many in zip(single, batched, strict=True):
        if isinstance(one, Exception):
            continue
        assert np.max(np.abs(one - many)) <= EMBED_BATCH_TOLERANCE


def test_score_batch_8_equals_score_one_at_a_time(espeak_corpus):
    from resyn_bench.metrics.speaker import EMBED_BATCH_TOLERANCE

    utts, audio, refs, group = espeak_corpus
    group.fit_corpus(utts, refs)
    one = [group.score(refs[u.utt_id], audio[u.utt_id], u) for u in utts[:8]]
    many = group.score_batch([refs[u.utt_id] for u in utts[:8]], [audio[u.utt_id] for u in utts[:8]],
                             utts[:8])
    for a, b in zip(one, many, strict=True):
        assert a.values.keys() == b.values.keys() and a.extra["predicted"] == b.extra["predicted"]
        for k in a.values:
            assert abs(a.values[k] - b.values[k]) <= 2 * EMBED_BATCH_TOLERANCE, k


def test_batch_size_defaults_and_checks():
    assert SpeakerMetrics().batch_size == 1                  # CPU: exact whatever the batches
    assert SpeakerMetrics(device="cuda").batch_size == 16
    assert SpeakerMetrics(batch_size=8).batch_size == 8
    assert SpeakerMetrics(batch_size=8).settings() == SpeakerMetrics().settings()
    with pytest.raises(ValueError, match="batch_size"):
        SpeakerMetrics(batch_size=0)
