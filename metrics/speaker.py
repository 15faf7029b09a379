"""Speaker identity: held-out speaker-ID accuracy, verification EER / minDCF, cosine similarity.

Embeddings
    A :class:`SpeakerEncoder` turns 16 kHz audio into an L2-normalised vector. The default
    backend is Resemblyzer 0.1.4 (GE2E 3-layer LSTM, 256-d; weights ship inside the package):
    ``preprocess_wav(x, source_sr=16000)`` (volume normalisation to -30 dBFS, increase only,
    and webrtcvad removal of long silences), then ``embed_utterance`` (1.6 s partials at 1.3
    per second, mean of partial embeddings, L2-normalised). Audio with less than
    ``min_speech_s`` of speech left after VAD trimming raises :class:`MetricError`.

Corpus models (``fit_corpus``, on the *real* recordings only)
    * speaker models: per speaker, the L2-normalised mean of its utterances' embeddings;
    * a closed-set speaker-ID classifier: ``"logreg"`` (scikit-learn LogisticRegression on
      standardised embeddings) or ``"centroid"`` (nearest speaker model by cosine).

    Cross-validation keeps every scored utterance out of the models that judge it: each real
    utterance gets one of ``folds`` folds (per speaker: ids sorted, shuffled with ``seed``, dealt
    round-robin, the dealing position carried over from one speaker to the next so folds stay
    balanced). The output for utterance *u* is scored by the models fitted without *u*'s fold,
    whatever system produced it, so the ``copy`` system (outputs = references) gets a fair
    held-out accuracy and every system is judged by exactly the same models.

    A speaker with a single real utterance is *enrolment-only*: the utterance belongs to no
    fold and is in the training set of every fold (a class of the classifier and a non-target
    model for everybody else), and outputs of that utterance are not scored (MetricError: no
    held-out model of that speaker exists). With round-robin dealing, a speaker with >= 2
    utterances keeps at least one training utterance in every fold, so every fold model
    enrols every speaker. At least two speakers are required.

Trials (``aggregate``)
    Each scored output is compared with every enrolled speaker model of its held-out fold
    (raw cosine, no score normalisation): the comparison with its target speaker's model is a
    target trial, each other one a non-target trial. EER and minDCF are computed from all
    trials of all scored outputs. The target speaker is ``utterance.target_speaker`` when that
    attribute is set (voice conversion), else ``utterance.speaker``.

Source leakage (voice conversion only: target != ``utterance.speaker``)
    The same output and trials are also judged against the *source* speaker:
    ``spk.source_acc`` (the classifier names the source; pooled), ``spk.source_cos`` (cosine
    with the source's held-out centroid) and ``spk.source_eer`` (EER of the trials of converted
    outputs with the source as the claimed identity). Chance accuracy / 50 % EER = no source
    identity left. Resynthesis records carry none of these.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.audio import SILENCE_PEAK
from resyn_bench.core.hashing import sha256_file_or_none
from resyn_bench.core.versions import package_version
from resyn_bench.metrics.base import MetricError, MetricGroup, MetricSpec, NotApplicable, Score

SAMPLE_RATE = 16000
#: Audio (after VAD trimming) below which an embedding is refused. webrtcvad trimming keeps
#: 0.2-0.3 s around anything it detects (smoothing over 8 windows of 30 ms, then +-3 windows of
#: dilation; a lone 60 ms voiced blip keeps 0.3 s), so this default only rejects audio in which
#: the VAD finds no speech at all. Short real speech is common (FSDD digits: median 0.39 s
#: after trimming), hence no stricter default; raise it for stricter use (Resemblyzer's
#: partials are 1.6 s, shorter audio is zero-padded and its embedding less reliable).
DEFAULT_MIN_SPEECH_S = 0.2
CLASSIFIERS = ("logreg", "centroid")


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------

def _scores(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{what}: no scores")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: scores contain NaN/inf")
    return a


def error_rates(target_scores, nontarget_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All operating points ``(thresholds, far, frr)`` of a detector "accept if score >= θ".

    ``thresholds`` are the distinct scores in ascending order followed by ``+inf``;
    FAR(θ) = fraction of non-target scores >= θ, FRR(θ) = fraction of target scores < θ.
    The first point (lowest score) always has FAR = 1, FRR = 0, the last (+inf) FAR = 0, FRR = 1.
    """
    tar = np.sort(_scores(target_scores, "target"))
    non = np.sort(_scores(nontarget_scores, "non-target"))
    thr = np.unique(np.concatenate([tar, non]))
    far = 1.0 - np.searchsorted(non, thr, side="left") / non.size
    frr = np.searchsorted(tar, thr, side="left") / tar.size
    return (np.append(thr, np.inf), np.append(far, 0.0), np.append(frr, 1.0))


def eer(target_scores, nontarget_scores) -> tuple[float, float]:
    """Equal error rate and its threshold, as ``(eer, threshold)`` (rates are fractions).

    Operating points are those of :func:`error_rates`. Between consecutive points, FAR - FRR
    strictly decreases (each distinct score moves at least one of them), from +1 to -1, so it
    changes sign exactly once. If a point has FAR = FRR, that is the EER. Otherwise the EER is
    where the straight segment between the last point with FAR > FRR and the first with
    FAR < FRR crosses FAR = FRR (linear interpolation in the (FAR, FRR) plane, i.e. on the
    ROC segment - the same number as the common ``brentq`` on a linearly interpolated ROC);
    the threshold is interpolated with the same weight, or is the largest score when the
    crossing lies between the largest score and +inf.

    Perfectly separated scores give 0; identical target and non-target scores give 0.5.
    """
    thr, far, frr = error_rates(target_scores, nontarget_scores)
    d = far - frr
    i = int(np.argmax(d <= 0))           # first point with FAR <= FRR (i >= 1: d[0] = 1)
    if d[i] == 0:
        return float(far[i]), float(thr[i])
    t = d[i - 1] / (d[i - 1] - d[i])     # in (0, 1)
    rate = far[i - 1] + t * (far[i] - far[i - 1])
    if np.isfinite(thr[i]):
        theta = thr[i - 1] + t * (thr[i] - thr[i - 1])
    else:
        theta = thr[i - 1]
    return float(rate), float(theta)


def min_dcf(target_scores, nontarget_scores, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE / VoxCeleb convention).

    DCF(θ) = c_miss * FRR(θ) * p_target + c_fa * FAR(θ) * (1 - p_target), minimised over all
    operating points of :func:`error_rates` (accept-all and reject-all included), divided by
    min(c_miss * p_target, c_fa * (1 - p_target)), the cost of the better trivial system. So
    1.0 means "no better than always accepting or always rejecting" and 0 means perfect.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError("c_miss and c_fa must be positive")
    _, far, frr = error_rates(target_scores, nontarget_scores)
    dcf = c_miss * p_target * frr + c_fa * (1.0 - p_target) * far
    return float(np.min(dcf) / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def cosine(a, b) -> float:
    """Cosine similarity of two vectors (ValueError for a zero vector or mismatched shapes)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cosine: shapes differ: {a.shape} vs {b.shape}")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        raise ValueError("cosine: zero vector")
    return float(np.dot(a, b) / (na * nb))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows (or a single vector) scaled to unit L2 norm."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(n == 0):
        raise ValueError("cannot normalise a zero vector")
    return x / n


def assign_folds(utt_ids: Iterable[str], speakers: Iterable[str], folds: int,
                 seed: int = 0) -> dict[str, int]:
    """Speaker-stratified fold of each utterance (``-1``: enrolment-only, never held out).

    Per speaker (speakers in sorted order), the utterance ids are sorted, shuffled with a
    generator seeded by ``seed`` and dealt to folds round-robin; the next speaker continues
    from the fold after the last one dealt, so fold sizes differ by at most one. A speaker
    with one utterance gets -1. Depends only on the set of (utt_id, speaker) pairs and seed.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    by_spk: dict[str, list[str]] = {}
    for uid, spk in zip(utt_ids, speakers, strict=True):
        by_spk.setdefault(str(spk), []).append(str(uid))
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    position = 0
    for spk in sorted(by_spk):
        ids = sorted(by_spk[spk])
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate utterance ids for speaker {spk}")
        if len(ids) == 1:
            out[ids[0]] = -1
            continue
        for uid in (ids[k] for k in rng.permutation(len(ids))):
            out[uid] = position % folds
            position += 1
    return out


# --------------------------------------------------------------------------------------------
# Embedding backends
# --------------------------------------------------------------------------------------------

class SpeakerEncoder:
    """Speaker-embedding backend: 16 kHz mono float samples -> L2-normalised float32 vector.

    Construction is cheap; ``load()`` loads the model, ``release()`` drops it."""

    name: str = ""
    sample_rate: int = SAMPLE_RATE

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_many(self, signals: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """``embed`` of each signal, or the exception it raised. Backends whose network can
        take several utterances in one call override this (same vectors within
        :data:`EMBED_BATCH_TOLERANCE`)."""
        out: list[np.ndarray | Exception] = []
        for x in signals:
            try:
                out.append(self.embed(x))
            except Exception as exc:  # this signal only
                out.append(exc)
        return out


#: largest difference of an embedding element (L2-normalised vectors) between one network call
#: per utterance and batched calls; float32 sums in another order: measured about 1e-7
EMBED_BATCH_TOLERANCE = 1e-5
#: partial utterances (1.6 s mel windows) per resemblyzer network call when batching
RESEMBLYZER_MAX_PARTIALS = 512


class ResemblyzerEncoder(SpeakerEncoder):
    """Resemblyzer ``VoiceEncoder`` on CPU (``preprocess_wav`` + ``embed_utterance``)."""

    name = "resemblyzer"

    def __init__(self, min_speech_s: float = DEFAULT_MIN_SPEECH_S, device: str = "cpu"):
        if min_speech_s < 0:
            raise ValueError("min_speech_s must be >= 0")
        self.min_speech_s = float(min_speech_s)
        self.device = device
        self._model = None
        self._preprocess = None

    @staticmethod
    def _weights_path() -> Path | None:
        spec = importlib.util.find_spec("resemblyzer")   # locates without importing torch
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"

    def settings(self) -> dict[str, Any]:
        version = package_version("resemblyzer")
        path = self._weights_path()
        return {"backend": self.name, "version": version,
                "weights_sha256": sha256_file_or_none(path) if path else None,
                "preprocess": "preprocess_wav(source_sr=16000): -30 dBFS (increase only), "
                              "webrtcvad long-silence trimming",
                "embed": "embed_utterance(rate=1.3, min_coverage=0.75)",
                "min_speech_s": self.min_speech_s}

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            with warnings.catch_warnings():
                # webrtcvad imports pkg_resources, which warns on recent setuptools
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            raise MetricError(f"speaker backend resemblyzer is not installed ({exc}); "
                              "pip install 'resemblyzer==0.1.4'") from None
        self._model = VoiceEncoder(self.device, verbose=False)
        self._preprocess = preprocess_wav

    def release(self) -> None:
        self._model = None
        self._preprocess = None

    def _speech(self, samples_16k: np.ndarray) -> np.ndarray:
        """The checked, preprocessed (level-normalised, VAD-trimmed) waveform of one signal."""
        x = np.asarray(samples_16k, dtype=np.float32).ravel()
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise MetricError("speaker embedding: audio is empty or not finite")
        peak = float(np.max(np.abs(x)))
        if peak < SILENCE_PEAK:   # preprocess_wav would divide by a zero RMS (NaN samples)
            raise MetricError(f"speaker embedding: audio is silent (peak {peak:.1e}), no speech "
                              "for VAD trimming to keep")
        # webrtcvad sees int16 PCM; clip so out-of-range floats cannot wrap around
        x = np.clip(x, -1.0, 1.0)
        wav = self._preprocess(x, source_sr=self.sample_rate)
        speech_s = len(wav) / self.sample_rate
        if speech_s < max(self.min_speech_s, 1e-9):
            raise MetricError(f"speaker embedding: only {speech_s:.2f} s of speech left after VAD "
                              f"trimming of {len(x) / self.sample_rate:.2f} s of audio "
                              f"(need >= {self.min_speech_s:.2f} s)")
        return wav

    @staticmethod
    def _normalised(emb) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float64)
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            raise MetricError("speaker embedding: the encoder returned a zero/non-finite vector")
        return (emb / norm).astype(np.float32)

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        wav = self._speech(samples_16k)
        return self._normalised(self._model.embed_utterance(wav))

    def _partials(self, wav: np.ndarray) -> np.ndarray:
        """The 1.6 s mel windows ``embed_utterance`` averages over (its defaults: rate 1.3,
        min_coverage 0.75; the audio zero-padded to cover the last window)."""
        from resemblyzer import audio as rz_audio

        wav_slices, mel_slices = self._model.compute_partial_slices(len(wav), 1.3, 0.75)
        need = wav_slices[-1].stop
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)), "constant")
        mel = rz_audio.wav_to_mel_spectrogram(wav)
        return np.array([mel[s] for s in mel_slices])

    def embed_many(self, signals: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """Every signal's 1.6 s windows through the network together (up to
        :data:`RESEMBLYZER_MAX_PARTIALS` per call), each utterance's embedding the normalised
        mean of its own windows' embeddings, as ``embed_utterance`` computes it."""
        import torch

        if self._model is None:
            self.load()
        out: list[np.ndarray | Exception | None] = [None] * len(signals)
        windows, owner = [], []
        for i, x in enumerate(signals):
            try:
                partials = self._partials(self._speech(x))
            except Exception as exc:  # this signal only
                out[i] = exc
                continue
            windows.append(partials)
            owner += [i] * len(partials)
        if windows:
            mels = np.concatenate(windows)
            embedded = []
            with torch.no_grad():
                for start in range(0, len(mels), RESEMBLYZER_MAX_PARTIALS):
                    chunk = torch.from_numpy(mels[start:start + RESEMBLYZER_MAX_PARTIALS])
                    embedded.append(self._model(chunk.to(self._model.device)).cpu().numpy())
            partial_embeds = np.concatenate(embedded)
            owner_arr = np.asarray(owner)
            for i in sorted(set(owner)):
                try:
                    raw = np.mean(partial_embeds[owner_arr == i], axis=0)
                    out[i] = self._normalised(raw / np.linalg.norm(raw, 2))
                except Exception as exc:
                    out[i] = exc
        return out


def _wavlm_ecapa(**opts) -> SpeakerEncoder:
    from resyn_bench.metrics.speaker_models import WavLMECAPAEncoder

    return WavLMECAPAEncoder(**opts)


def _sb_ecapa(**opts) -> SpeakerEncoder:
    from resyn_bench.metrics.speaker_models import SpeechBrainECAPAEncoder

    return SpeechBrainECAPAEncoder(**opts)


#: embedding backends; wavlm-ecapa and ecapa (metrics/speaker_models.py) need their weights
_ENCODERS = {"resemblyzer": ResemblyzerEncoder, "wavlm-ecapa": _wavlm_ecapa, "ecapa": _sb_ecapa}


def make_encoder(name: str = "resemblyzer", **opts) -> SpeakerEncoder:
    """A speaker-embedding backend by name (cheap: the model loads on ``load()``)."""
    try:
        cls = _ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown speaker backend {name!r}; known: {sorted(_ENCODERS)}") from None
    if "device" in opts and not _takes(cls, "device"):
        # a backend without a device choice (a plugin, a test backend) runs where it runs; only
        # an explicit accelerator request it cannot honour is an error
        device = opts.pop("device")
        if device not in (None, "cpu"):
            raise ValueError(f"speaker backend {name!r} has no device option; it cannot run on "
                             f"{device!r} (give -m spk.device=cpu)")
    try:
        return cls(**opts)
    except TypeError as exc:  # an option of another backend (e.g. min_speech_s with ecapa)
        raise ValueError(f"speaker backend {name!r}: {exc}") from None


def _takes(factory, name: str) -> bool:
    """Whether ``factory`` (a class or function) accepts the keyword ``name``."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# --------------------------------------------------------------------------------------------
# Corpus models
# --------------------------------------------------------------------------------------------

class _FoldModel:
    """Speaker models and classifier fitted on one training set of real embeddings."""

    def __init__(self, embeddings: np.ndarray, labels: list[str], classifier: str, seed: int):
        self.speakers = sorted(set(labels))
        self.index = {s: i for i, s in enumerate(self.speakers)}
        y = np.array([self.index[s] for s in labels])
        x = l2_normalise(embeddings)
        self.centroids = l2_normalise(np.stack([x[y == k].mean(axis=0)
                                                for k in range(len(self.speakers))]))
        self.classifier = classifier
        self._clf = None
        if classifier == "logreg":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            self._clf = make_pipeline(StandardScaler(),
                                      LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
            self._clf.fit(x, y)

    def trial_scores(self, emb: np.ndarray) -> np.ndarray:
        return self.centroids @ l2_normalise(emb)

    def predict(self, emb: np.ndarray, trials: np.ndarray) -> str:
        if self._clf is None:
            return self.speakers[int(np.argmax(trials))]
        return self.speakers[int(self._clf.predict(l2_normalise(emb)[None, :])[0])]


# --------------------------------------------------------------------------------------------
# Metric group
# --------------------------------------------------------------------------------------------

_SPECS = (
    MetricSpec("spk.acc", "Spk-ID acc", higher_is_better=True, unit="%", percent=True,
               table_stat="pooled",
               description="Closed-set speaker-ID top-1 accuracy of the output w.r.t. its target "
                           "speaker, by a classifier trained on held-out real recordings "
                           "(cross-validation folds)"),
    MetricSpec("spk.eer", "Spk EER", higher_is_better=False, unit="%", percent=True,
               description="Speaker-verification equal error rate: every output vs every "
                           "enrolled speaker model (L2-normalised centroid of held-out real "
                           "embeddings; target = its target speaker), raw cosine scores"),
    MetricSpec("spk.min_dcf", "minDCF", higher_is_better=False,
               description="Normalised minimum detection cost of the same trials "
                           "(C_miss = C_fa = 1, P_target as in settings)"),
    MetricSpec("spk.cos_ref", "Spk cos (ref)", higher_is_better=True,
               description="Cosine similarity of the speaker embeddings of the output and of "
                           "its own reference recording"),
    MetricSpec("spk.cos_centroid", "Spk cos (centroid)", higher_is_better=True,
               description="Cosine similarity of the output's speaker embedding and its target "
                           "speaker's held-out centroid"),
    MetricSpec("spk.source_acc", "Src-ID acc", higher_is_better=False, unit="%", percent=True,
               table_stat="pooled",
               description="Voice conversion only (target != source): share of outputs the "
                           "speaker-ID classifier assigns to the SOURCE speaker (source leakage; "
                           "chance = no leakage)"),
    MetricSpec("spk.source_eer", "Src EER", higher_is_better=True, unit="%", percent=True,
               description="Voice conversion only: verification EER of the same trials with the "
                           "SOURCE speaker as the claimed identity (50 % = no source identity "
                           "left, 0 = the source speaker is plainly recognisable)"),
    MetricSpec("spk.source_cos", "Src cos (centroid)", higher_is_better=False,
               description="Voice conversion only: cosine similarity of the output's embedding "
                           "and the SOURCE speaker's held-out centroid"),
    MetricSpec("spk.chance", "Spk-ID chance", higher_is_better=True, unit="%", percent=True,
               description="Reference value, not a score: chance-level speaker-ID accuracy, "
                           "1 / number of enrolled speakers", bookkeeping=True),
    MetricSpec("spk.n_target_trials", "target trials", higher_is_better=False, unit="count",
               description="Count (not a score): number of target trials behind EER/minDCF", bookkeeping=True),
    MetricSpec("spk.n_nontarget_trials", "non-target trials", higher_is_better=False, unit="count",
               description="Count (not a score): number of non-target trials behind EER/minDCF", bookkeeping=True),
)

PROTOCOL = ("real utterances dealt to speaker-stratified folds; the output of utterance u is "
            "scored by models fitted on the real utterances outside u's fold (single-utterance "
            "speakers: enrolment-only, in every training set, their outputs not scored); "
            "target speaker = utterance.target_speaker if set, else utterance.speaker; "
            "trials: each output vs every enrolled speaker centroid (raw cosine), target trial "
            "= its target speaker; chance = 1 / number of enrolled speakers")


class TrialReplicates:
    """Corpus statistics of a trial-scored group (the speaker metrics: EER and minDCF from every
    output-vs-speaker trial score, accuracy from counts) on many bootstrap replicates at once.

    A replicate is a multiplicity vector ``w`` over utterances (``bootstrap_weights``); every
    trial score then counts ``w[utt]`` times. All scores are sorted once; per block of
    replicates, cumulative weights give FAR/FRR at every distinct score, and EER/minDCF follow
    with the exact formulas of :func:`eer` / :func:`min_dcf` (extra
    operating points at scores a replicate did not draw repeat a neighbouring point, so they
    change neither). Tests check equality with ``group.aggregate`` on indexed replicates.
    """

    KEYS = ("spk.eer", "spk.min_dcf", "spk.chance", "spk.n_target_trials", "spk.n_nontarget_trials",
            "spk.source_eer")

    def __init__(self, group, entries: list[dict[str, Any]]):
        self.group = group
        n = len(entries)
        utt, score, is_tar, is_src, has_src = [], [], [], [], []
        speakers: dict[str, int] = {}
        enrolled_pairs = []
        for i, e in enumerate(entries):
            extra = e.get("extra") or {}
            trials, target = extra.get("trials"), extra.get("target")
            if not trials or target is None:
                continue
            for spk, value in trials.items():
                enrolled_pairs.append((i, speakers.setdefault(spk, len(speakers))))
                if value is None or not math.isfinite(value):
                    continue
                utt.append(i)
                score.append(float(value))
                is_tar.append(spk == target)
                # voice conversion: the same trials judged against the source speaker
                is_src.append(spk == extra.get("source"))
                has_src.append(extra.get("source") is not None)
        order = np.argsort(np.asarray(score, dtype=np.float64), kind="stable")
        self.score = np.asarray(score, dtype=np.float64)[order]
        self.utt = np.asarray(utt, dtype=np.int64)[order]
        self.is_tar = np.asarray(is_tar, dtype=bool)[order]
        self.is_src = np.asarray(is_src, dtype=bool)[order]
        self.has_src = np.asarray(has_src, dtype=bool)[order]
        # first position of each distinct score: "scores < threshold" = exclusive cumsum there
        self.first = np.flatnonzero(np.r_[True, self.score[1:] != self.score[:-1]]) \
            if self.score.size else np.zeros(0, dtype=np.int64)
        self.enrolled = np.zeros((n, max(1, len(speakers))), dtype=np.float64)
        for i, k in enrolled_pairs:
            self.enrolled[i, k] = 1.0
        self.has_speakers = bool(speakers)
        self.count_keys = sorted({k for e in entries for k in (e.get("counts") or {})})
        self.counts = np.array([[float((e.get("counts") or {}).get(k) or 0.0) for k in self.count_keys]
                                for e in entries]).reshape(n, len(self.count_keys))

    def block_stats(self, w: np.ndarray) -> dict[str, list[float | None]]:
        """Trial statistics for each row of a weight block ``w`` (replicates x utterances)."""
        b = w.shape[0]
        out: dict[str, list[float | None]] = {k: [None] * b for k in self.KEYS}
        ws = w[:, self.utt] if self.utt.size else np.zeros((b, 0))
        n_tar, n_non, ct, cn = self._rates(ws, self.is_tar, np.ones_like(self.is_tar))
        if self.has_src.any():
            s_tar, s_non, st, sn = self._rates(ws, self.is_src, self.has_src)
            for r in range(b):
                if s_tar[r] > 0 and s_non[r] > 0:
                    out["spk.source_eer"][r] = self._eer(st[r], sn[r], s_tar[r], s_non[r])[0]
        enrolled = ((w > 0).astype(np.float64) @ self.enrolled > 0).sum(axis=1) \
            if self.has_speakers else np.zeros(b)
        p = self.group.p_target
        for r in range(b):
            out["spk.n_target_trials"][r] = float(n_tar[r])
            out["spk.n_nontarget_trials"][r] = float(n_non[r])
            out["spk.chance"][r] = 1.0 / enrolled[r] if enrolled[r] else None
            if n_tar[r] == 0 or n_non[r] == 0:
                continue
            out["spk.eer"][r], far, frr = self._eer(ct[r], cn[r], n_tar[r], n_non[r])
            dcf = 1.0 * p * frr + 1.0 * (1.0 - p) * far
            out["spk.min_dcf"][r] = float(np.min(dcf) / min(1.0 * p, 1.0 * (1.0 - p)))
        return out

    def _rates(self, ws: np.ndarray, positive: np.ndarray, used: np.ndarray):
        """Weighted trial totals and weight strictly below each distinct score (exclusive
        cumulative sums) of the positive (claimed identity) and negative trials in use."""
        wt = np.where(positive, ws, 0.0)
        wn = np.where(used & ~positive, ws, 0.0)
        ct = (np.cumsum(wt, axis=1) - wt)[:, self.first]
        cn = (np.cumsum(wn, axis=1) - wn)[:, self.first]
        return wt.sum(axis=1), wn.sum(axis=1), ct, cn

    @staticmethod
    def _eer(ct, cn, n_tar, n_non):
        """EER (as :func:`eer`) with the FAR/FRR curves."""
        far = np.append(1.0 - cn / n_non, 0.0)
        frr = np.append(ct / n_tar, 1.0)
        d = far - frr
        i = int(np.argmax(d <= 0))
        if d[i] == 0:
            return float(far[i]), far, frr
        t = d[i - 1] / (d[i - 1] - d[i])
        return float(far[i - 1] + t * (far[i] - far[i - 1])), far, frr

    def replicates(self, weight_blocks) -> list[dict[str, float | None]]:
        """``group.aggregate`` of every replicate (as dicts), from blocks of weights."""
        reps: list[dict[str, float | None]] = []
        for w in weight_blocks:
            stats = self.block_stats(w)
            sums = w @ self.counts
            for r in range(w.shape[0]):
                d = dict(self.group.pool(dict(zip(self.count_keys, sums[r].tolist(), strict=True))))
                d.update({k: stats[k][r] for k in self.KEYS})
                reps.append(d)
        return reps


class SpeakerMetrics(MetricGroup):
    """Speaker identity of the output: held-out speaker-ID accuracy, EER/minDCF, cosines.

    Lifecycle: ``load()`` loads the embedding model, ``analyse_reference(audio)`` embeds a
    real recording (``{"embedding": float32 vector}``), ``fit_corpus(utterances, refs)`` fits
    speaker centroids and the speaker-ID classifier per cross-validation fold on the real
    embeddings (labels = ``utterance.speaker``), ``score`` embeds an output and judges it with
    the models of the fold that excludes its own utterance, ``aggregate`` pools accuracy and
    computes EER/minDCF from the stored trial scores. See the module docstring for the fold
    and trial protocol.

    Target speaker of a trial: ``getattr(utterance, "target_speaker", None) or
    utterance.speaker``. For resynthesis it is the utterance's own speaker; voice-conversion
    systems set ``target_speaker`` on the utterance they are scored for, and accuracy, the
    target trial and ``cos_centroid`` then refer to that speaker (``cos_ref`` still compares
    with the utterance's own - source - recording).
    """

    name = "spk"
    specs = _SPECS
    sample_rate = SAMPLE_RATE
    needs_corpus = True

    #: options every embedding backend takes (passed on to it): the runner's --device
    forwarded_options = ("device",)

    def __init__(self, backend: str = "resemblyzer", classifier: str = "logreg", folds: int = 5,
                 p_target: float = 0.01, seed: int = 0, embedding: str | None = None,
                 enroll_dataset: str | None = None, enroll_root: str | None = None,
                 enroll_split: str | None = None, enroll_limit: int | None = None,
                 enroll_refs: Mapping[str, list[str]] | None = None,
                 batch_size: int | None = None, **backend_opts):
        if embedding is not None:  # -m spk.embedding=wavlm-ecapa|ecapa|resemblyzer
            if backend != "resemblyzer" and backend != embedding:
                raise ValueError(f"spk: embedding={embedding!r} and backend={backend!r} disagree; "
                                 f"give one of them")
            backend = embedding
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if int(folds) != folds or folds < 2:
            raise ValueError(f"folds must be an integer >= 2, got {folds}")
        if not 0.0 < p_target < 1.0:
            raise ValueError(f"p_target must be in (0, 1), got {p_target}")
        if enroll_root is not None and enroll_dataset is None:
            raise ValueError("spk: enroll_root needs enroll_dataset (the dataset name, e.g. "
                             "-m spk.enroll_dataset=ljspeech -m spk.enroll_root=DIR)")
        # speakers enrolled from another dataset (cross-dataset conversion): their real
        # recordings join every fold's models as enrolment-only utterances, never scored
        self.enroll = ({"dataset": str(enroll_dataset), "root": enroll_root, "split": enroll_split,
                        "limit": enroll_limit} if enroll_dataset else None)
        # speakers enrolled from given recordings ({speaker: [paths]}: targets of another
        # tool's conversions that are in no dataset, ``--conversions`` column target_ref)
        if enroll_refs is not None and not (isinstance(enroll_refs, Mapping) and all(
                isinstance(v, (list, tuple)) and v for v in enroll_refs.values())):
            raise ValueError("spk: enroll_refs must map each speaker to a list of recordings")
        self.enroll_refs = {str(k): [str(p) for p in v] for k, v in (enroll_refs or {}).items()}
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"spk: batch_size must be >= 1 (outputs per embedding call), "
                             f"got {batch_size}")
        # outputs embedded per network call (equal within EMBED_BATCH_TOLERANCE, so not a
        # setting): 16 on a GPU. 1 on a CPU: a batch's last bits depend on which outputs share
        # it, so shards, resumed runs and retries would differ from one run in the 8th digit
        # (measured: cos 0.97324858 vs 0.97324855), for 1.2x on a group that takes ~3 % of a
        # run (40 outputs, one thread: 1.85 s one at a time, 1.52 s in batches of 8)
        device = str(backend_opts.get("device") or "cpu")
        self.batch_size = int(batch_size) if batch_size is not None else (
            16 if device.startswith("cuda") else 1)
        self.encoder = make_encoder(backend, **backend_opts)
        self.classifier = classifier
        self.folds = int(folds)
        self.p_target = float(p_target)
        self.seed = int(seed)
        self._fold_of: dict[str, int] = {}
        self._models: dict[int, _FoldModel] = {}
        self._train: tuple[np.ndarray, list[str], np.ndarray] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"backend": self.encoder.name, "encoder": self.encoder.settings(),
                "classifier": self.classifier,
                "classifier_detail": ("StandardScaler + LogisticRegression(C=1, lbfgs)"
                                      if self.classifier == "logreg"
                                      else "nearest L2-normalised centroid by cosine"),
                "folds": self.folds, "seed": self.seed, "p_target": self.p_target,
                "c_miss": 1.0, "c_fa": 1.0, "score_normalisation": "none",
                "protocol": PROTOCOL}

    def load(self) -> None:
        self.encoder.load()

    def release(self) -> None:
        self.encoder.release()

    def _embed(self, audio, what: str) -> np.ndarray:
        return self.encoder.embed(self.samples_at_rate(audio, what))

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        return {"embedding": self._embed(audio, "reference")}

    # ---- corpus ------------------------------------------------------------------------------

    def fit_corpus(self, utterances: list, references: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Fold assignment and one set of models per fold (plus one on all real utterances,
        used for outputs of utterances that are not in the corpus)."""
        utts = [u for u in utterances if u.utt_id in references]
        extra_ids, extra_labels, extra_emb = self._enrolment()
        speakers = sorted({str(u.speaker) for u in utts} | set(extra_labels))
        if len(speakers) < 2:
            raise NotApplicable(f"spk: speaker identification needs real recordings of >= 2 "
                              f"speakers, got {len(speakers)} ({', '.join(speakers) or 'none'})")
        ids = [u.utt_id for u in utts]
        if len(set(ids)) != len(ids):
            raise MetricError("spk: duplicate utterance ids in the corpus")
        labels = [str(u.speaker) for u in utts]
        emb = np.stack([np.asarray(references[i]["embedding"], dtype=np.float64) for i in ids])
        fold_of = assign_folds(ids, labels, self.folds, self.seed)
        if extra_ids:   # enrolment-only: in every fold's training set
            clash = sorted(set(extra_ids) & set(ids))
            if clash:
                raise MetricError(f"spk: enrolment utterance ids also in the evaluated dataset: "
                                  f"{', '.join(clash[:5])}")
            fold_of.update({i: -1 for i in extra_ids})
            ids, labels = ids + extra_ids, labels + extra_labels
            emb = np.concatenate([emb, extra_emb])
        if all(f < 0 for f in fold_of.values()):
            raise NotApplicable("spk: every speaker has a single real utterance; no utterance can "
                              "be held out (need >= 2 utterances for some speaker)")
        folds = np.array([fold_of[i] for i in ids])
        models = {}
        for f in sorted(set(folds[folds >= 0].tolist())):
            keep = folds != f
            models[f] = _FoldModel(emb[keep], [labels[k] for k in np.flatnonzero(keep)],
                                   self.classifier, self.seed)
        self._fold_of = fold_of
        self._models = models
        self._train = (emb, labels, folds)

    def _enrolment(self) -> tuple[list[str], list[str], np.ndarray]:
        """Ids (``enroll:<utt_id>``), speakers and embeddings of the enrolment dataset's real
        recordings (none without ``enroll_dataset``). An unreadable or speechless recording is
        an error naming it: enrolment is the reference every output is judged by."""
        if self.enroll is None and not self.enroll_refs:
            return [], [], np.zeros((0, 1))
        from resyn_bench.audio import AudioError, ensure_rate, load_audio
        from resyn_bench.datasets import load_dataset

        items = []   # (id, speaker, path, where)
        e = self.enroll
        if e is not None:
            data = load_dataset(e["dataset"], e["root"], e["split"], e["limit"])
            if not data.utterances:
                raise MetricError(f"spk: the enrolment dataset {e['dataset']} ({e['root']}) has "
                                  "no utterances")
            items += [(f"enroll:{u.utt_id}", str(u.speaker), u.path, e["dataset"])
                      for u in data.utterances]
        for speaker, paths in sorted(self.enroll_refs.items()):
            items += [(f"ref:{speaker}:{k}", speaker, path, f"target_ref of {speaker}")
                      for k, path in enumerate(paths)]
        ids, labels, embs = [], [], []
        for utt_id, speaker, path, where in items:
            try:
                audio = ensure_rate(load_audio(path), SAMPLE_RATE, purpose="spk enrolment")
                embs.append(np.asarray(self._embed(audio, "enrolment"), dtype=np.float64))
            except (AudioError, MetricError) as exc:
                raise MetricError(f"spk: enrolment recording {path} ({where}): {exc}") from None
            ids.append(utt_id)
            labels.append(speaker)
        return ids, labels, np.stack(embs)

    def _model_for(self, utt_id: str) -> tuple[int | None, _FoldModel]:
        if self._train is None:
            raise MetricError("spk: fit_corpus() must run before score()")
        if utt_id not in self._fold_of:        # not a corpus utterance: nothing to hold out
            if None not in self._models:
                emb, labels, _ = self._train
                self._models[None] = _FoldModel(emb, labels, self.classifier, self.seed)
            return None, self._models[None]
        fold = self._fold_of[utt_id]
        if fold < 0:
            raise MetricError(f"spk: utterance {utt_id}'s speaker has a single real utterance "
                              "(enrolment-only): no held-out model, output not scored")
        return fold, self._models[fold]

    # ---- scoring -----------------------------------------------------------------------------

    def _judge(self, utterance) -> tuple[str, int, _FoldModel]:
        """(target speaker, fold, fold model) for an output of ``utterance``."""
        target = str(getattr(utterance, "target_speaker", None) or utterance.speaker)
        fold, model = self._model_for(utterance.utt_id)
        if target not in model.index:
            raise MetricError(f"spk: target speaker {target!r} has no real recordings in the "
                              f"corpus (enrolled: {len(model.speakers)} speakers)")
        return target, fold, model

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        judge = self._judge(utterance)
        return self._scored(reference, self._embed(output, "output"), utterance, judge)

    def score_batch(self, references, outputs, utterances) -> list[Score | Exception]:
        """``score`` of several outputs, embedded in one network call
        (:meth:`SpeakerEncoder.embed_many`); equal within :data:`EMBED_BATCH_TOLERANCE`."""
        results: list[Any] = [None] * len(outputs)
        todo, signals = [], []
        for i, (output, utterance) in enumerate(zip(outputs, utterances, strict=True)):
            try:
                judge = self._judge(utterance)
                signals.append(self.samples_at_rate(output, "output"))
            except Exception as exc:
                results[i] = exc
                continue
            todo.append((i, judge))
        for (i, judge), emb in zip(todo, self.encoder.embed_many(signals), strict=True):
            if isinstance(emb, Exception):
                results[i] = emb
                continue
            try:
                results[i] = self._scored(references[i], emb, utterances[i], judge)
            except Exception as exc:
                results[i] = exc
        return results

    def _scored(self, reference, embedding: np.ndarray, utterance, judge) -> Score:
        target, fold, model = judge
        emb = np.asarray(embedding).astype(np.float64)
        trials = model.trial_scores(emb)
        predicted = model.predict(emb, trials)
        correct = 1.0 if predicted == target else 0.0
        values = {"spk.acc": correct,
                  "spk.cos_ref": cosine(emb, reference["embedding"]),
                  "spk.cos_centroid": float(trials[model.index[target]])}
        extra = {"target": target, "predicted": predicted, "fold": fold,
                 "trials": {s: float(v) for s, v in zip(model.speakers, trials, strict=True)}}
        counts = {"correct": correct, "trials": 1.0}
        source = str(utterance.speaker)
        if source != target and source in model.index:
            # voice conversion: how much of the source voice is left (leakage)
            values["spk.source_acc"] = 1.0 if predicted == source else 0.0
            values["spk.source_cos"] = float(trials[model.index[source]])
            counts.update(source_correct=values["spk.source_acc"], source_trials=1.0)
            extra["source"] = source
        return Score(values=values, counts=counts, extra=extra)

    # ---- corpus-level ------------------------------------------------------------------------

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        n = counts.get("trials", 0.0)
        ns = counts.get("source_trials", 0.0)
        return {"spk.acc": float(counts.get("correct", 0.0)) / n if n > 0 else None,
                "spk.source_acc": float(counts.get("source_correct", 0.0)) / ns if ns > 0 else None}

    def aggregate(self, entries: list[dict[str, Any]]) -> dict[str, float | None]:
        """Accuracy from summed counts; EER / minDCF from every stored trial score."""
        out = dict(super().aggregate(entries))
        tar: list[float] = []
        non: list[float] = []
        src: list[float] = []        # the same trials, the SOURCE speaker as claimed identity
        src_non: list[float] = []
        enrolled: set[str] = set()
        for entry in entries:
            extra = entry.get("extra") or {}
            trials, target = extra.get("trials"), extra.get("target")
            if not trials or target is None:
                continue
            enrolled.update(trials)
            source = extra.get("source")
            for spk, value in trials.items():
                if value is None or not math.isfinite(value):
                    continue
                (tar if spk == target else non).append(float(value))
                if source is not None:
                    (src if spk == source else src_non).append(float(value))
        both = bool(tar) and bool(non)
        out["spk.source_eer"] = eer(src, src_non)[0] if src and src_non else None
        out["spk.eer"] = eer(tar, non)[0] if both else None
        out["spk.min_dcf"] = min_dcf(tar, non, self.p_target) if both else None
        out["spk.chance"] = 1.0 / len(enrolled) if enrolled else None
        out["spk.n_target_trials"] = float(len(tar))
        out["spk.n_nontarget_trials"] = float(len(non))
        return out

    def replicates(self, entries: list[dict[str, Any]], weight_blocks
                   ) -> list[dict[str, float | None]] | None:
        """``aggregate`` of every bootstrap replicate, vectorised over trial scores
        (:class:`TrialReplicates`); None for a subclass that changes ``aggregate``."""
        if type(self).aggregate is not SpeakerMetrics.aggregate or not entries:
            return None
        return TrialReplicates(self, entries).replicates(weight_blocks)


__all__ = ["SpeakerMetrics", "TrialReplicates", "SpeakerEncoder", "ResemblyzerEncoder", "make_encoder", "eer",
           "min_dcf", "cosine", "error_rates", "assign_folds", "l2_normalise", "CLASSIFIERS",
           "DEFAULT_MIN_SPEECH_S", "PROTOCOL"]
