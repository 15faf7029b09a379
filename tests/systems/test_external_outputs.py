"""``outputs:DIR`` with files as other tools publish them (ogg, mp3, stereo, other rates) and
external codecs' bitrates: declared (``-o bitrate=``) or measured from a bitstreams folder."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import harmonic_tone

from resyn_bench.audio import Audio
from resyn_bench.reports.collate import summarize_run
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_records
from resyn_bench.systems.base import SystemFailure
from resyn_bench.systems.outputs import DEFAULT_PATTERNS, OutputsSystem


class _Utt:
    def __init__(self, utt_id, speaker="s1", path="wavs/x.wav"):
        self.utt_id, self.speaker, self.path = utt_id, speaker, path


def _has(fmt: str) -> bool:
    return fmt in sf.available_formats()


def test_default_lookup_order_is_documented_lossless_first():
    assert DEFAULT_PATTERNS == (
        "{utt_id}.wav", "{utt_id}.flac", "{utt_id}.ogg", "{utt_id}.mp3",
        "{speaker}/{utt_id}.wav", "{speaker}/{utt_id}.flac", "{speaker}/{utt_id}.ogg",
        "{speaker}/{utt_id}.mp3")


@pytest.mark.parametrize("fmt,ext,subtype", [("OGG", "ogg", "VORBIS"), ("MP3", "mp3", None)])
def test_default_lookup_finds_lossy_files_stereo_other_rate(tmp_path, fmt, ext, subtype):
    if not _has(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}")
    x = harmonic_tone(180, duration=1.0, sr=22050).astype(np.float32)
    stereo = np.stack([x, x], axis=1)
    sf.write(tmp_path / f"a.{ext}", stereo, 22050, format=fmt, subtype=subtype)
    (tmp_path / "s1").mkdir()
    sf.write(tmp_path / "s1" / f"b.{ext}", x, 22050, format=fmt, subtype=subtype)
    system = OutputsSystem(str(tmp_path))
    assert system.locate(_Utt("a")) == tmp_path / f"a.{ext}"
    assert system.locate(_Utt("b")) == tmp_path / "s1" / f"b.{ext}"
    src = Audio(np.zeros(16000, np.float32), 16000)
    out = system.decode(system.encode(src, _Utt("a")))
    assert out.sample_rate == 22050 and out.samples.ndim == 1   # stereo averaged to mono
    assert abs(len(out.samples) / 22050 - 1.0) < 0.1           # codec padding at most
    # the lossy decode still carries the tone: strongest bin near 180 Hz
    spec = np.abs(np.fft.rfft(out.samples[:22050]))
    assert abs(np.argmax(spec) * 22050 / len(out.samples[:22050]) - 180) < 5
    # a lossless file of the same id wins over the lossy one; nothing at all -> all tried
    sf.write(tmp_path / "a.flac", x, 22050)
    assert system.locate(_Utt("a")).suffix == ".flac"
    with pytest.raises(SystemFailure, match=r"c\.ogg.*c\.mp3"):
        system.locate(_Utt("c"))


def test_bitrate_and_bitstreams_options_are_checked(tmp_path):
    for bad in ("fast", "0", "-5", "inf"):
        with pytest.raises(ValueError, match="bitrate"):
            OutputsSystem(str(tmp_path), bitrate=bad)
    with pytest.raises(ValueError, match="bitstreams"):
        OutputsSystem(str(tmp_path), bitstreams=str(tmp_path / "absent"))


def _outputs_of(corpus, dest):
    """The corpus's own utterances as another tool's outputs (ogg when available)."""
    dest.mkdir()
    ext, fmt = ("ogg", "OGG") if _has("OGG") else ("flac", "FLAC")
    ids = []
    for wav in sorted((corpus.parent / "wavs").glob("*.wav")):
        x, sr = sf.read(wav)
        sf.write(dest / f"{wav.stem}.{ext}", x, sr, format=fmt)
        ids.append(wav.stem)
    return ids


def test_declared_bitrate_reaches_the_summary(tiny_corpus, tmp_path, home):
    gen = tmp_path / "gen"
    ids = _outputs_of(tiny_corpus, gen)
    out = tmp_path / "run"
    run(RunConfig(system=f"outputs:{gen}", dataset="manifest", data_root=str(tiny_corpus),
                  out=str(out), metrics="pitch", f0_preset="dio",
                  system_options={"bitrate": "6000"}), progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    assert set(recs) == set(ids) and all(r["status"] == "ok" for r in recs.values())
    for r in recs.values():
        assert r["bitstream"]["source"] == "declared"
        assert r["bitstream"]["bps"] == pytest.approx(6000, rel=1e-3)
    summary = summarize_run(out, n_boot=0)
    assert summary.bitrate == pytest.approx(6000, rel=1e-3)
    assert summary.bitrate_source == "declared"


def test_measured_bitrate_is_total_bits_over_total_seconds(tiny_corpus, tmp_path, home):
    gen = tmp_path / "gen"
    ids = _outputs_of(tiny_corpus, gen)
    codes = tmp_path / "codes"
    (codes / "spkB").mkdir(parents=True)
    sizes = {}
    for i, uid in enumerate(ids[:-1]):   # the last utterance has no bitstream file
        n = 500 + 100 * i
        folder = codes / "spkB" if uid.startswith("spkB") else codes
        (folder / f"{uid}.ecdc").write_bytes(b"\x01" * n)
        sizes[uid] = n
    (codes / f"{ids[0]}.json").write_bytes(b"{}")          # a second file of one utterance
    sizes[ids[0]] += 2
    (codes / f"{ids[0]}0.ecdc").write_bytes(b"x" * 999)    # another id's prefix: not counted
    out = tmp_path / "run"
    run(RunConfig(system=f"outputs:{gen}", dataset="manifest", data_root=str(tiny_corpus),
                  out=str(out), metrics="pitch", f0_preset="dio",
                  system_options={"bitstreams": str(codes), "bitrate": 1234}), progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    missing = recs[ids[-1]]
    assert missing["status"] == "failed" and "no bitstream file" in missing["reason"]
    seconds = 0.0
    for uid, n in sizes.items():
        b = recs[uid]["bitstream"]
        assert recs[uid]["status"] == "ok" and b["source"] == "measured"
        assert b["bits"] == 8 * n and b["declared_bps"] == 1234
        assert b["seconds"] == pytest.approx(sf.info(tiny_corpus.parent / "wavs" / f"{uid}.wav").duration)
        seconds += b["seconds"]
    summary = summarize_run(out, n_boot=0)
    assert summary.bitrate_source == "measured"
    assert summary.bitrate == pytest.approx(8 * sum(sizes.values()) / seconds)
