"""``resyn-bench disentangle``: known answers on synthetic voices with fake systems.

Three "speakers" are harmonic voices in three pitch registers; the speaker embedding is a
test backend (the log-spectrum of 40-1600 Hz, which separates the registers), so speaker ID
is exact on real recordings and no model is loaded. Fake speaker-conditioned systems:

* ``ignores-speaker``: the output is the input (whatever the target voice or F0 edit):
  full source leakage, target accuracy at 0 (below chance), flat-F0 VDE/FFE equal to the
  resynthesis ones, achieved shift 0 and range factor 1;
* ``target-recordings``: a VC output is the target speaker's own recording: target accuracy 1,
  no source leakage, F0 register on the target's;
* ``pitch-follower``: re-synthesises the utterance's known contour in the target voice's
  register with the requested F0 edit: achieved shift/scale equal the requested ones.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import write_manifest

from resyn_bench import registry
from resyn_bench.audio import Audio, load_audio
from resyn_bench.systems.base import Streams, StreamSpec, System

SR = 16000
DUR = 1.0
REGISTERS = {"spkA": 0.8, "spkB": 1.3, "spkC": 2.0}
N_UTT = 3
CORPUS: dict[str, object] = {}


def base_contour(j: int, t: np.ndarray) -> np.ndarray:
    """Utterance j's contour in Hz (before the speaker's register), voiced 0.1-0.9 s."""
    x = np.clip((t - 0.1) / 0.8, 0.0, 1.0)
    shapes = [100 + 60 * x, 160 - 60 * x, 100 + 60 * np.sin(np.pi * x)]
    f = shapes[j % len(shapes)]
    return np.where((t >= 0.1) & (t < 0.9), f, 0.0)


def voice(j: int, register: float, shift: float = 0.0, scale: float = 1.0, seed: int = 0):
    t = np.arange(int(DUR * SR)) / SR
    f = base_contour(j, t)
    voiced = f > 0
    log = np.log(np.where(voiced, f * register, 1.0))
    centre = log[voiced].mean()
    f = np.where(voiced, np.exp(centre + scale * (log - centre)) * 2 ** (shift / 12), 0.0)
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = sum((1.0 / h) * (h * f < 4000) * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
            for h in range(1, 25))
    fade = np.hanning(320)
    env = np.convolve(voiced.astype(float), fade / fade.sum(), "same")
    y = 0.3 * y * env / np.max(np.abs(y)) + 1e-4 * rng.standard_normal(len(t))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    (root / "wavs").mkdir()
    rows = []
    for si, (spk, reg) in enumerate(REGISTERS.items()):
        for j in range(N_UTT):
            uid = f"{spk}_{j}"
            sf.write(root / "wavs" / f"{uid}.wav", voice(j, reg, seed=10 * si + j), SR,
                     subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"wavs/{uid}.wav"})
    manifest = write_manifest(root, rows)
    CORPUS["root"] = root
    return manifest


class SpectrumEncoder:
    """Test speaker backend: log power of 40-1600 Hz in 60 log-spaced bands, mean removed."""

    name = "test-spectrum"
    sample_rate = SR

    def settings(self):
        return {"backend": self.name}

    def load(self):
        pass

    def release(self):
        pass

    def embed(self, x):
        x = np.asarray(x, dtype=np.float64)
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / SR)
        edges = np.geomspace(40, 1600, 61)
        bands = np.array([spec[(freqs >= a) & (freqs < b)].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)])
        v = np.log(bands + 1e-9)
        v -= v.mean()
        return (v / np.linalg.norm(v)).astype(np.float32)


class _Voices(System):
    input_sample_rate = SR

    def __init__(self, f0_edit: str | None = None):
        self.f0_edit = f0_edit

    def stream_specs(self):
        return [StreamSpec("speaker", "speaker", None, len(REGISTERS))]

    def speakers(self):
        return sorted(REGISTERS)

    def encode(self, audio, utterance):
        return Streams({"audio": audio.samples, "utt": utterance}, audio.sample_rate)


class IgnoresSpeaker(_Voices):
    def decode(self, streams):
        return Audio(np.asarray(streams["audio"], dtype=np.float32), SR)


class TargetRecordings(_Voices):
    def decode(self, streams):
        utt = streams["utt"]
        target = getattr(utt, "target_speaker", None)
        if not target:
            return Audio(np.asarray(streams["audio"], dtype=np.float32), SR)
        j = int(utt.utt_id.split("__")[0].rsplit("_", 1)[1])
        return load_audio(CORPUS["root"] / "wavs" / f"{target}_{j}.wav")


class PitchFollower(_Voices):
    def decode(self, streams):
        utt = streams["utt"]
        voice_name = getattr(utt, "target_speaker", None) or utt.speaker
        j = int(utt.utt_id.split("__")[0].rsplit("_", 1)[1])
        shift, scale = 0.0, 1.0
        if self.f0_edit and self.f0_edit.startswith("shift:"):
            shift = float(self.f0_edit[6:])
        elif self.f0_edit and self.f0_edit.startswith("scale:"):
            scale = float(self.f0_edit[6:])
        elif self.f0_edit == "flat":
            scale = 0.0
        return Audio(voice(j, REGISTERS[voice_name], shift, scale, seed=99), SR)


class NoF0Stream(IgnoresSpeaker):
    """Takes no f0_edit option at all: its F0-edit runs are skipped with the reason."""

    def __init__(self):
        pass


@pytest.fixture
def fakes(monkeypatch):
    from resyn_bench.metrics import speaker

    monkeypatch.setitem(speaker._ENCODERS, "test-spectrum", SpectrumEncoder)
    # the fake encoder is patched into this process only: no worker processes
    monkeypatch.setenv("RESYN_BENCH_ISOLATION", "0")
    names = {"ignores-speaker": IgnoresSpeaker, "target-recordings": TargetRecordings,
             "pitch-follower": PitchFollower, "no-f0-stream": NoF0Stream}
    for name, cls in names.items():
        registry.register_system(name, cls, "test", replace=True)
    yield
    for name in names:
        registry.SYSTEMS.pop(name, None)


def _disentangle(corpus, out, *systems, extra=()):
    from resyn_bench.cli import main

    argv = ["disentangle", "--dataset", "manifest", "--data-root", str(corpus), "--out", str(out),
            "--metrics", "spk,f0", "--f0-preset", "dio", "-m", "spk.backend=test-spectrum",
            "-m", "spk.folds=3", "--n-boot", "200", "--quiet", "--shift", "3", "--scale", "0.5",
            *extra]
    for s in systems:
        argv += ["--system", s]
    return main(argv)


def _figures(report):
    rows = json.loads((report / "disentangle.json").read_text())
    return {r["label"]: {f["key"]: f for f in r["figures"]} for r in rows}, rows


def test_known_answers(corpus, tmp_path, home, fakes, capsys):
    out = tmp_path / "disent"
    assert _disentangle(corpus, out, "ignores-speaker", "target-recordings", "pitch-follower") == 0
    printed = capsys.readouterr().out
    figs, rows = _figures(out / "summary")
    assert [r["label"] for r in rows] == ["ignores-speaker", "target-recordings", "pitch-follower"]
    for label in figs:
        for exp in ("resynthesis", "vc", "f0_flat", "f0_shift", "f0_scale"):
            assert (out / label / exp / "manifest.json").is_file()

    ign, tgt, fol = figs["ignores-speaker"], figs["target-recordings"], figs["pitch-follower"]
    chance = ign["spk.chance"]["value"]
    assert chance == pytest.approx(1 / 3)
    # ignoring the speaker stream: every output is still its source speaker
    assert ign["spk.acc"]["value"] == 0.0 <= chance
    assert ign["spk.source_acc"]["value"] == 1.0
    assert ign["spk.eer"]["value"] >= 0.5 and ign["spk.source_eer"]["value"] == 0.0
    assert ign["spk.source_cos"]["value"] > ign["spk.cos_centroid"]["value"]
    # the target's own recordings: the opposite
    assert tgt["spk.acc"]["value"] == 1.0 and tgt["spk.source_acc"]["value"] == 0.0
    assert tgt["spk.eer"]["value"] == 0.0 and tgt["spk.source_eer"]["value"] >= 0.5
    # every figure has its CI around the estimate
    for f in (ign["spk.source_acc"], tgt["spk.acc"], ign["spk.eer"], tgt["spk.source_cos"]):
        assert f["low"] is not None and f["low"] <= f["value"] <= f["high"]

    # prosody: the output's register is the source's (ignores) or the target's (recordings);
    # registers are >= 7.5 semitones apart, utterances of one speaker differ by about 1
    assert ign["prosody.to_source_st"]["value"] < 1.5 and ign["prosody.to_target_st"]["value"] > 6
    assert tgt["prosody.to_target_st"]["value"] < 1.5 and tgt["prosody.to_source_st"]["value"] > 6
    assert fol["prosody.to_target_st"]["value"] < 1.5
    assert ign["prosody.intonation_r"]["value"] > 0.99           # the source contour itself
    assert fol["prosody.intonation_r"]["value"] > 0.95           # same contour, other register
    assert fol["prosody.range_ratio"]["value"] == pytest.approx(1.0, abs=0.15)

    # F0 ignored: the flat-F0 output is the original, VDE/FFE those of resynthesis (near 0)
    assert ign["f0.vde"]["value"] == pytest.approx(ign["f0.vde"]["value"])
    flat = {f["label"]: f for f in rows[0]["figures"] if f["key"] in ("f0.vde", "f0.ffe")}
    assert flat["VDE (flat)"]["value"] == pytest.approx(flat["VDE (resyn.)"]["value"], abs=1e-9)
    assert flat["FFE (flat)"]["value"] == pytest.approx(flat["FFE (resyn.)"]["value"], abs=1e-9)
    assert flat["FFE (flat)"]["value"] < 0.05
    assert ign["f0.shift_achieved"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert ign["f0.scale_achieved"]["value"] == pytest.approx(1.0, abs=1e-6)
    # an F0-following system: flattened F0 is far from the original; shifts achieved as asked
    fol_flat = {f["label"]: f for f in rows[2]["figures"] if f["key"] == "f0.ffe"}
    assert fol_flat["FFE (flat)"]["value"] > fol_flat["FFE (resyn.)"]["value"] + 0.05
    # paired differences flat - resynthesis: exactly 0 when F0 is ignored, > 0 (CI too) when not
    assert ign["f0.ffe#delta"]["value"] == 0.0 == ign["f0.ffe#delta"]["high"]
    assert fol["f0.ffe#delta"]["low"] > 0 and fol["f0.ffe#delta"]["value"] == pytest.approx(
        fol_flat["FFE (flat)"]["value"] - fol_flat["FFE (resyn.)"]["value"])
    assert fol["f0.shift_achieved"]["value"] == pytest.approx(3.0, abs=0.3)
    assert fol["f0.shift_achieved"]["note"] == "requested shift:+3"
    assert fol["f0.scale_achieved"]["value"] == pytest.approx(0.5, abs=0.1)

    # outputs: the terminal summary, Markdown/LaTeX/CSV and one plot per system
    assert "source leakage:" in printed and "ignores-speaker" in printed
    md = (out / "summary" / "disentangle.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 4  # header + 3 systems
    assert "source leakage: source acc" in md
    assert "\\begin{tabular}" in (out / "summary" / "disentangle.tex").read_text()
    page = (out / "summary" / "disentangle.html").read_text()
    assert page.count("<th>ignores-speaker</th>") == 1 and "<td>source acc</td>" in page
    with open(out / "summary" / "disentangle.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    src = next(r for r in csv_rows if r["system"] == "ignores-speaker" and r["key"] == "spk.source_acc")
    assert float(src["value"]) == 100.0 and src["unit"] == "%"
    for label in figs:
        assert (out / "summary" / "plots" / f"disentangle_{label}.png").stat().st_size > 1000

    # resumable: the same command runs and scores nothing again, same figures
    before = {p: p.stat().st_size for p in out.glob("*/*/records.jsonl")}
    assert _disentangle(corpus, out, "ignores-speaker", "target-recordings", "pitch-follower") == 0
    assert {p: p.stat().st_size for p in out.glob("*/*/records.jsonl")} == before
    again, _ = _figures(out / "summary")
    assert again["ignores-speaker"]["spk.source_acc"] == ign["spk.source_acc"]

    # the same run folders summarised from --runs (how runs made by other tools come in)
    capsys.readouterr()
    from resyn_bench.cli import main

    rep = tmp_path / "rep"
    assert main(["disentangle", "--runs", *sorted(str(p.parent) for p in out.glob("*/*/manifest.json")), "--report", str(rep),
                 "--n-boot", "200", "--no-plots"]) == 0
    via_runs, _ = _figures(rep)
    assert via_runs["target-recordings"]["spk.acc"] == tgt["spk.acc"]
    assert via_runs["pitch-follower"]["f0.shift_achieved"] == fol["f0.shift_achieved"]


def test_a_system_without_f0_edits_is_summarised_without_them(corpus, tmp_path, home, fakes,
                                                              capsys):
    out = tmp_path / "d"
    assert _disentangle(corpus, out, "no-f0-stream", extra=["--no-scale"]) == 0
    printed = capsys.readouterr().out
    assert "f0_flat: skipped" in printed and "f0_edit" in printed
    figs, rows = _figures(out / "summary")
    assert figs["no-f0-stream"]["spk.source_acc"]["value"] == 1.0
    assert any("f0_shift run skipped" in n for n in rows[0]["notes"])
    assert not (out / "no-f0-stream" / "f0_scale").exists()


def test_bad_commands_say_what_to_do(corpus, tmp_path, home, fakes, capsys):
    from resyn_bench.cli import main

    assert main(["disentangle", "--dataset", "manifest", "--data-root", str(corpus),
                 "--system", "ignores-speaker"]) == 2
    assert "--out ROOT" in capsys.readouterr().err
    assert main(["disentangle", "--runs", str(tmp_path)]) == 2
    assert "--report" in capsys.readouterr().err
    assert _disentangle(corpus, tmp_path / "x", "ignores-speaker", extra=["-o", "f0_edit=flat"]) == 2
    assert "chosen by disentangle" in capsys.readouterr().err
    assert _disentangle(corpus, tmp_path / "x", "ignores-speaker", "ignores-speaker") == 2
    assert "give each a --label" in capsys.readouterr().err
    assert main(["disentangle", "--runs", str(tmp_path), "--report", str(tmp_path / "r")]) == 2
    assert "--runs" in (err := capsys.readouterr().err) and "manifest.json" in err


def test_f0_edit_parsing_and_hz_edits():
    from resyn_bench.systems.vocoder.system import edit_f0_hz, parse_f0_edit

    assert parse_f0_edit(None) is None and parse_f0_edit("none") is None
    assert parse_f0_edit("flat") == ("flat", 0.0)
    assert parse_f0_edit("shift:+2") == ("shift", 2.0) and parse_f0_edit("shift:-1.5") == ("shift", -1.5)
    assert parse_f0_edit("scale:0.5") == ("scale", 0.5)
    for bad in ("shift", "shift:x", "scale:-1", "louder", "scale:nan"):
        with pytest.raises(ValueError, match="f0_edit"):
            parse_f0_edit(bad)
    f0 = np.array([0.0, 100.0, 200.0, 0.0, 141.4213562])
    up = edit_f0_hz(f0, "shift", 12.0)
    assert np.allclose(up, [0, 200, 400, 0, 282.8427], rtol=1e-5)
    half = edit_f0_hz(f0, "scale", 0.5)
    # geometric mean of the voiced frames (141.42) kept, log-excursions halved
    assert half[0] == half[3] == 0.0
    assert np.allclose(half[[1, 2, 4]], [141.4213562 * 2 ** -0.25, 141.4213562 * 2 ** 0.25,
                                         141.4213562], rtol=1e-5)
    assert np.allclose(edit_f0_hz(f0, "scale", 0.0)[[1, 2, 4]], 141.4213562, rtol=1e-5)
    assert not edit_f0_hz(np.zeros(4), "shift", 3).any()


def test_cross_dataset_targets_are_enrolled_from_where_they_live(corpus, tmp_path, home, fakes,
                                                                 capsys):
    """Content of speakers A and B converted into voice C, whose real recordings live in
    another dataset: without enrolment C's outputs cannot be judged; with it they are."""
    root = CORPUS["root"]
    split = tmp_path / "ab.txt"
    split.write_text("".join(f"{s}_{j}\n" for s in ("spkA", "spkB") for j in range(N_UTT)))
    enroll = root / "voice_c.tsv"
    with open(enroll, "w", encoding="utf-8") as fh:
        fh.write("utt_id\tspeaker\tpath\n" + "".join(f"c{j}\tspkC\twavs/spkC_{j}.wav\n"
                                                      for j in range(N_UTT)))
    common = ["--split", str(split), "--metrics", "spk,f0", "--no-shift", "--no-scale",
              "--no-plots"]

    assert _disentangle(corpus, tmp_path / "plain", "target-recordings", extra=common) == 0
    plain, _ = _figures(tmp_path / "plain" / "summary")
    records = [json.loads(line) for line in
               (tmp_path / "plain" / "target-recordings" / "vc" / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r.get("part") == "metric" and r.get("status") == "failed"]
    assert failed and all("no real recordings" in r["reason"] for r in failed)
    assert plain["target-recordings"]["spk.acc"]["n"] == 12 - len(failed)
    # no register for voice C: only outputs in voices A and B have an F0 figure
    assert plain["target-recordings"]["prosody.to_target_st"]["n"] == 12 - len(failed)

    assert _disentangle(corpus, tmp_path / "enrolled", "target-recordings",
                        extra=[*common, "--enroll-dataset", "manifest", "--enroll-root",
                               str(enroll)]) == 0
    figs, _ = _figures(tmp_path / "enrolled" / "summary")
    t = figs["target-recordings"]
    assert t["spk.acc"]["n"] == 12 and t["spk.acc"]["value"] == 1.0
    assert t["spk.source_acc"]["value"] == 0.0 and t["spk.chance"]["value"] == pytest.approx(1 / 3)
    # voice C's register from its enrolment recordings: every output is in its target register
    assert t["prosody.to_target_st"]["n"] == 12 and t["prosody.to_target_st"]["value"] < 1.5
    from resyn_bench.cli import main

    capsys.readouterr()
    assert main(["disentangle", "--dataset", "manifest", "--data-root", str(corpus), "--out",
                 str(tmp_path / "x"), "--system", "target-recordings", "--enroll-root",
                 str(enroll)]) == 2
    assert "--enroll-dataset" in capsys.readouterr().err


def test_f0_edit_figures_of_unvoiced_outputs_say_why_they_are_missing():
    from resyn_bench.reports.disentangle import _mean_figure, edit_values

    unvoiced = {"utt_id": "u1", "speaker": "A", "status": "ok",
                "scores": {"f0": {"status": "ok", "extra": {"contour": {
                    "t0": 0.0, "dt": 0.02, "ref": [0.0, 120.0, 121.0, 119.0, 118.0, 122.0, 0.0],
                    "out": [0.0] * 7}}}}}
    values = edit_values([unvoiced], None)
    assert values["shift"] == [None] and values["speakers"] == ["A"]
    f = _mean_figure("f0.shift_achieved", "shift:+2 achieved", "f0", values["shift"],
                     values["speakers"], 100, 0, unit="st", note="requested shift:+2")
    assert f.value is None and f.text() == "–"
    assert f.note == "requested shift:+2; no output with >= 5 frames voiced in both"


def test_content_delta_pairs_conversions_with_their_source_resynthesis():
    """ΔWER (VC - resyn.) pools each side's edit counts; conversions of one source utterance
    share its bootstrap row; utterances on one side only are left out."""
    from resyn_bench.reports.collate import metric_group
    from resyn_bench.reports.disentangle import paired_count_delta

    group = metric_group("asr")

    def entry(uid, spk, edits, words=10):
        return {"utt_id": uid, "speaker": spk, "counts": {"word_edits": edits, "ref_words": words,
                                                          "char_edits": 0, "ref_chars": 40}}

    res = [entry("a1", "A", 1), entry("a2", "A", 0), entry("b1", "B", 2), entry("b2", "B", 1),
           entry("z9", "B", 9)]                                    # z9: never converted
    vc = [entry("a1__to_B", "A", 3), entry("a1__to_C", "A", 5), entry("a2__to_B", "A", 2),
          entry("b1__to_A", "B", 4), entry("b2__to_C", "B", 2), entry("q1__to_A", "A", 7)]
    result = paired_count_delta(group, res, vc, "asr.wer", n_boot=300, seed=1)
    assert result.n_common == 4
    # VC: (3+5+2+4+2) / 50 = 0.32; resynthesis of the same sources: (1+0+2+1) / 40 = 0.1
    assert result.estimate_b == pytest.approx(0.32) and result.estimate_a == pytest.approx(0.1)
    assert result.delta == pytest.approx(0.22) and 0 < result.low <= 0.22 <= result.high
    assert paired_count_delta(group, res, [entry("x__to_A", "A", 1)], "asr.wer") is None


@pytest.mark.slow
def test_tiny_system_trained_offline_on_real_speech(tmp_path, home, capsys):
    """The issue's acceptance check, shortened: a tiny multi-speaker system trained here on
    ../shared/corpora/vctk_autovc_16k (log-mel k-means, F0 quantizer, and a vocoder of 150
    steps: after 20 its output is so quiet that the speaker VAD finds no speech), then
    `resyn-bench disentangle` prints every figure group with CIs."""
    from conftest import SHARED

    corpus = SHARED / "corpora" / "vctk_autovc_16k" / "manifest.tsv"
    if not corpus.exists():
        pytest.skip(f"shared corpus not available at {corpus.parent}")
    from resyn_bench.cli import main

    data = ["--dataset", "manifest", "--data-root", str(corpus.parent)]
    km, f0q, voc = tmp_path / "km.npz", tmp_path / "f0q", tmp_path / "voc"
    assert main(["train", "kmeans", "--encoder", "logmel", "--k", "50", *data, "--out", str(km)]) == 0
    assert main(["train", "f0-quantizer", "--config", "tiny-f0", *data, "--out", str(f0q),
                 "--max-steps", "20", "--threads", "1", "--quiet"]) == 0
    assert main(["train", "vocoder", "--config", "tiny", *data, "--units", str(km),
                 "--f0-quantizer", str(f0q), "--out", str(voc), "--max-steps", "150",
                 "--threads", "1", "--quiet"]) == 0
    with open(corpus, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    per_speaker: dict[str, list[str]] = {}
    for r in rows:
        per_speaker.setdefault(r["speaker"], []).append(r["utt_id"])
    split = tmp_path / "split.txt"     # three utterances of each of the four speakers
    split.write_text("".join(f"{u}\n" for ids in per_speaker.values() for u in ids[:3]))
    capsys.readouterr()
    out = tmp_path / "disent"
    assert main(["disentangle", "--system", f"ckpt:{voc}", "--label", "tiny", *data, "--split",
                 str(split), "--metrics", "spk,f0", "--f0-preset", "dio", "--out", str(out),
                 "--quiet", "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    for title in ("target similarity:", "source leakage:", "prosody:", "F0 carried by units:"):
        assert title in printed
    figs, rows_ = _figures(out / "summary")
    t = figs["tiny"]
    assert t["spk.chance"]["value"] == pytest.approx(0.25)
    assert t["spk.acc"]["n"] == 24 and t["f0.ffe"]["n"] == 12
    for key in ("spk.acc", "spk.source_acc", "spk.eer", "spk.source_eer", "f0.ffe",
                "f0.ffe#delta", "f0.shift_achieved", "f0.scale_achieved", "prosody.to_target_st"):
        f = t[key]
        assert f["low"] is not None and f["low"] <= f["value"] <= f["high"], (key, f)


def test_labels_from_the_command_line_never_leave_the_output_root(tmp_path):
    """A --label is user text: its run folders stay directly under OUT, bounded in length."""
    from resyn_bench.disentangle import plan_runs

    out = tmp_path / "out"
    labels = ["../../escape", "/abs/x", "x" * 300, "plain-label"]
    plan = plan_runs([f"sys{i}" for i in range(len(labels))], out, "f0", labels=labels)
    roots = {p.out.parent for p in plan}
    assert len(roots) == len(labels)
    for root in roots:
        assert root.parent == out and len(root.name) <= 100 and not root.name.startswith(".")
    assert out / "plain-label" in roots
