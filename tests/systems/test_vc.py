"""Voice conversion runs (--vc-targets): the paper's protocol of N random targets per utterance."""
from __future__ import annotations

import numpy as np
import pytest

from resyn_bench import registry
from resyn_bench.audio import Audio
from resyn_bench.runner import RunConfig, RunError, conversion_utterances, run
from resyn_bench.store import read_manifest, read_records
from resyn_bench.systems.base import Streams, StreamSpec, System

VOICES = {"spkA": 110.0, "spkB": 190.0, "spkC": 260.0, "spkD": 330.0}


class ToneVoices(System):
    """A toy speaker-conditioned system: the output is a tone at the target voice's pitch, so
    the voice used for each utterance can be read back from the audio."""

    input_sample_rate = 16000

    def stream_specs(self):
        return [StreamSpec("speaker", "speaker", None, len(VOICES))]

    def speakers(self):
        return sorted(VOICES)

    def encode(self, audio, utterance):
        voice = getattr(utterance, "target_speaker", None) or utterance.speaker
        return Streams({"speaker": voice, "n": len(audio.samples)}, audio.sample_rate)

    def decode(self, streams):
        t = np.arange(streams["n"]) / 16000
        return Audio((0.3 * np.sin(2 * np.pi * VOICES[streams["speaker"]] * t)).astype(np.float32),
                     16000)


class FixedVoice(ToneVoices):
    target_speaker = "spkC"


class OneVoice(ToneVoices):
    def speakers(self):
        return None


@pytest.fixture
def tone_system():
    registry.register_system("tone-voices", ToneVoices, "test", replace=True)
    registry.register_system("one-voice", OneVoice, "test", replace=True)
    registry.register_system("fixed-voice", FixedVoice, "test", replace=True)
    yield
    registry.SYSTEMS.pop("fixed-voice", None)
    registry.SYSTEMS.pop("tone-voices", None)
    registry.SYSTEMS.pop("one-voice", None)


def _config(corpus, out, **kw):
    return RunConfig(system="tone-voices", dataset="manifest", data_root=str(corpus), out=str(out),
                     metrics="pitch", f0_preset="dio", vc_targets=2, experiment="vc", **kw)


def test_each_utterance_is_converted_to_distinct_other_speakers(tiny_corpus, tmp_path, home,
                                                                   tone_system):
    out = tmp_path / "vc"
    result = run(_config(tiny_corpus, out), progress=False)
    records = read_records(out)
    assert result.n_total == len(records) == 12 and result.n_failed == 0   # 6 utterances x 2
    by_source: dict[str, list[str]] = {}
    for r in records:
        source, _, target = r["utt_id"].partition("__to_")
        assert r["target_speaker"] == target and target != r["speaker"] and target in VOICES
        by_source.setdefault(source, []).append(target)
        # the output really is in the target's voice: its F0 is the target's pitch
        f0 = np.array(r["scores"]["f0"]["extra"]["contour"]["out"], dtype=float)
        assert np.median(f0[f0 > 0]) == pytest.approx(VOICES[target], rel=0.05)
    assert len(by_source) == 6 and all(len(set(t)) == 2 for t in by_source.values())
    manifest = read_manifest(out)
    assert manifest["dataset"]["n_utterances"] == 12 and manifest["dataset"]["n_source_utterances"] == 6
    assert manifest["config"]["experiment"] == "vc"

    # the choice is seeded per utterance: the same whatever the selection or order, and resumable
    again = run(_config(tiny_corpus, out), progress=False)
    assert again.n_processed == 0 and len(read_records(out)) == 12
    other = run(_config(tiny_corpus, tmp_path / "vc-limited", limit=3), progress=False)
    assert {r["utt_id"] for r in read_records(tmp_path / "vc-limited")} <= {r["utt_id"] for r in records}
    assert other.n_total == 6
    reseeded = run(_config(tiny_corpus, tmp_path / "vc-seed1", vc_seed=1), progress=False)
    assert reseeded.n_total == 12
    assert {r["utt_id"] for r in read_records(tmp_path / "vc-seed1")} != {r["utt_id"] for r in records}


def test_conversion_needs_a_choice_of_speakers(tiny_corpus, tmp_path, home, tone_system):
    with pytest.raises(RunError, match="choice of speakers"):
        run(RunConfig(system="one-voice", dataset="manifest", data_root=str(tiny_corpus),
                      out=str(tmp_path / "x"), metrics="pitch", vc_targets=1), progress=False)


def test_targets_are_capped_by_the_speakers_available():
    from resyn_bench.datasets import Utterance

    utts = [Utterance("u1", "spkA", "u1.wav")]
    out = conversion_utterances(utts, ToneVoices(), n_targets=10)
    assert sorted(u.target_speaker for u in out) == ["spkB", "spkC", "spkD"]
    assert [u.utt_id for u in conversion_utterances(utts, ToneVoices(), 2, seed=3)] == \
        [u.utt_id for u in conversion_utterances(utts, ToneVoices(), 2, seed=3)]


def test_a_fixed_target_and_per_utterance_targets_are_refused(tiny_corpus, tmp_path, home,
                                                              tone_system):
    # every output would be in the fixed voice while the records name other targets
    with pytest.raises(RunError, match="one or the other"):
        run(RunConfig(system="fixed-voice", dataset="manifest", data_root=str(tiny_corpus),
                      out=str(tmp_path / "x"), metrics="pitch", vc_targets=1), progress=False)
    with pytest.raises(RunError, match="must be >= 0"):
        run(RunConfig(system="tone-voices", dataset="manifest", data_root=str(tiny_corpus),
                      out=str(tmp_path / "y"), metrics="pitch", vc_targets=-1), progress=False)
