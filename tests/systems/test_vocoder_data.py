"""Vocoder / F0-quantizer training data (resyn_bench.systems.vocoder.data)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from conftest import SHARED, harmonic_signal  # noqa: E402

from resyn_bench.datasets import Dataset, Utterance, load_dataset  # noqa: E402
from resyn_bench.systems.vocoder.data import (  # noqa: E402
    F0_CODE_HOP,
    DataError,
    F0Dataset,
    VocoderDataset,
    alignment_block,
    collate,
    extract_f0,
    load_training_audio,
    peak_normalize,
    trim_aligned,
)
from resyn_bench.systems.vocoder.f0_stats import F0Stats, SpeakerF0  # noqa: E402
from resyn_bench.unit_files import UnitEntry, write_unit_file  # noqa: E402

SEG = 8960
# lengths chosen so trimming matters: not multiples of 80/160/320, one shorter than a segment
LENGTHS = {"long_a": 32123, "long_b": 20011, "short": 4837}


class FakeEncoder:
    """HuBERT-like frame count ((N - 400) // hop + 1); unit value = frame index."""

    def __init__(self, hop_size: int):
        self.hop_size = hop_size
        self.name = f"fake{hop_size}"
        self.calls = 0

    def encode(self, wav):
        self.calls += 1
        return np.arange((len(wav) - 400) // self.hop_size + 1, dtype=np.int64)


def frame_index_f0(wav):
    """'F0' track whose value is frame number + 1 (never 0, so never unvoiced)."""
    return np.arange(len(wav) // 80, dtype=np.float32) + 1


def decode(x: np.ndarray, length: int) -> np.ndarray:
    """Sample index encoded by the ramp signal (peak-normalised to 0.95)."""
    return np.rint(np.asarray(x, np.float64) / 0.95 * length).astype(np.int64) - 1


@pytest.fixture(scope="module")
def ramp_dataset(tmp_path_factory) -> Dataset:
    """Float wavs whose sample i is proportional to i + 1: every sample says where it came from."""
    root = tmp_path_factory.mktemp("ramps")
    utts = []
    for i, (uid, n) in enumerate(LENGTHS.items()):
        x = (np.arange(n, dtype=np.float64) + 1) / n * 0.5
        path = root / f"{uid}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")
        utts.append(Utterance(uid, "spkA" if i % 2 == 0 else "spkB", path))
    return Dataset("ramps", root, utts)


def test_alignment_blocks():
    assert alignment_block(320) == 320 and alignment_block(160) == 160
    assert alignment_block(320, f0_codes=True) == alignment_block(160, f0_codes=True) == 1280
    # the reference segment is a whole number of every grid
    for block in (320, 160, 1280):
        assert SEG % block == 0
    audio, units, f0 = trim_aligned(np.zeros(1000), np.arange(10), np.ones(20), 160, 160)
    assert (len(audio), len(units), len(f0)) == (960, 6, 12)
    audio, units, f0 = trim_aligned(np.zeros(5000), np.arange(100), np.ones(3), 320, 1280)
    assert (len(audio), len(units), len(f0)) == (3840, 12, 48) and f0[3:].sum() == 0


@pytest.mark.parametrize("hop", [320, 160])
@pytest.mark.parametrize("f0_codes", [False, True])
def test_crops_are_aligned(ramp_dataset, hop, f0_codes):
    ds = VocoderDataset(ramp_dataset, FakeEncoder(hop), f0_extractor=frame_index_f0,
                        f0_normalize=False, align_f0_codes=f0_codes, seed=7)
    block = 1280 if f0_codes else hop
    assert ds.block == block
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i, utt in enumerate(ramp_dataset):
            item = ds[i]
            n_file = LENGTHS[utt.utt_id]
            n_units = min(n_file // hop, (n_file - 400) // hop + 1)
            n_units -= n_units % (block // hop)
            length = n_units * hop                         # trimmed utterance, before repeats
            audio, code, f0 = item["audio"][0].numpy(), item["code"].numpy(), item["f0"][0].numpy()
            assert audio.shape == (SEG,) and code.shape == (SEG // hop,) and f0.shape == (SEG // 80,)
            assert len(audio) == len(code) * hop == len(f0) * 80
            pos = decode(audio, n_file)                    # position in the original file
            start = int(pos[0])
            assert start % block == 0 and start < length
            # repeated by concatenation when short, always consecutive otherwise
            assert np.array_equal(pos, (start + np.arange(SEG)) % length)
            assert np.array_equal(code, ((start + hop * np.arange(len(code))) % length) // hop)
            assert np.array_equal(f0, ((start + 80 * np.arange(len(f0))) % length) // 80 + 1)
            assert item["utt_id"] == utt.utt_id


@pytest.mark.parametrize("hop", [320, 160])
def test_whole_utterances_for_validation(ramp_dataset, hop):
    ds = VocoderDataset(ramp_dataset, FakeEncoder(hop), segment_size=None,
                        f0_extractor=frame_index_f0, f0_normalize=False)
    for i, utt in enumerate(ramp_dataset):
        item = ds[i]
        n_file = LENGTHS[utt.utt_id]
        t = item["audio"].shape[-1]
        assert t % F0_CODE_HOP == 0 and t > 0
        assert t == item["code"].shape[0] * hop == item["f0"].shape[-1] * 80
        assert t == (min(n_file // hop, (n_file - 400) // hop + 1) * hop) // 1280 * 1280
        assert np.array_equal(decode(item["audio"][0].numpy(), n_file), np.arange(t))
    batch = collate([ds[0], ds[1]])
    assert batch["audio"].shape[0] == 2 and batch["audio_lengths"].tolist() == [
        ds[0]["audio"].shape[-1], ds[1]["audio"].shape[-1]]
    assert batch["code"].shape[1] * hop == batch["audio"].shape[-1]


def test_determinism_and_collate(ramp_dataset):
    enc = FakeEncoder(320)
    a = VocoderDataset(ramp_dataset, enc, f0_extractor=frame_index_f0, f0_normalize=False,
                       seed=1)
    b = VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=frame_index_f0,
                       f0_normalize=False, seed=1)
    starts = lambda ds: [int(decode(ds[i]["audio"][0, :1].numpy(), n)[0])  # noqa: E731
                         for i, n in enumerate(LENGTHS.values())]
    first = starts(a)
    # items depend on (seed, epoch, index) only, not on the order they are asked for
    backwards = [int(decode(b[i]["audio"][0, :1].numpy(), n)[0])
                 for i, n in reversed(list(enumerate(LENGTHS.values())))]
    assert backwards[::-1] == first
    assert torch.equal(a[0]["audio"], b[0]["audio"])
    assert enc.calls == 3                                 # units encoded once per utterance
    seen = {tuple(first)}
    for epoch in range(1, 6):
        a.set_epoch(epoch)
        seen.add(tuple(starts(a)))
    assert len(seen) > 3                                  # epochs give new crops
    a.set_epoch(0)
    assert starts(a) == first                             # ... reproducibly
    c = VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=frame_index_f0,
                       f0_normalize=False, seed=2)
    assert starts(c) != first
    loader = torch.utils.data.DataLoader(a, batch_size=3, collate_fn=collate, shuffle=False)
    batch = next(iter(loader))
    assert batch["code"].shape == (3, 28) and batch["code"].dtype == torch.long
    assert batch["f0"].shape == (3, 1, 112) and batch["audio"].shape == (3, 1, SEG)
    assert batch["spkr"].shape == (3, 1) and batch["spkr"].tolist() == [[0], [1], [0]]
    assert batch["utt_id"] == list(LENGTHS) and "audio_lengths" not in batch


def test_speaker_normalisation_and_ids(ramp_dataset):
    def f0_150(wav):
        f = np.full(len(wav) // 80, 150.0, np.float32)
        f[::3] = 0.0                                      # unvoiced frames
        return f

    stats = F0Stats(global_stats=SpeakerF0(170.0, 10.0),
                    speakers={"spkA": SpeakerF0(100.0, 25.0), "spkB": SpeakerF0(200.0, 50.0)},
                    speaker_ids={"spkA": 3, "spkB": 8})
    ds = VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150, f0_stats=stats,
                        segment_size=None)
    assert ds.speaker_ids == {"spkA": 3, "spkB": 8}       # the stats' persisted map
    for i, utt in enumerate(ramp_dataset):
        item = ds[i]
        f0 = item["f0"][0].numpy()
        expected = 2.0 if utt.speaker == "spkA" else -1.0
        assert set(np.unique(f0).tolist()) == {0.0, expected}
        assert np.all(f0[::3] == 0)
        assert item["spkr"].tolist() == [3 if utt.speaker == "spkA" else 8]
    # reference-style stats keyed by integer id: looked up through the speaker id map
    ref = F0Stats.from_reference({0: {"f0_mean": 100.0, "f0_std": 25.0},
                                  1: {"f0_mean": 200.0, "f0_std": 50.0}})
    by_id = VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150, f0_stats=ref)
    assert by_id.speaker_ids == {"spkA": 0, "spkB": 1}
    assert set(np.unique(by_id[1]["f0"].numpy()).tolist()) == {0.0, -1.0}   # spkB
    from resyn_bench.systems.vocoder.f0_stats import F0StatsError
    with pytest.raises(F0StatsError, match="no F0 statistics for speaker 1"):
        VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150,
                       f0_stats=F0Stats.from_reference({0: {"f0_mean": 1.0, "f0_std": 1.0}}))
    own = VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150, f0_stats=stats,
                         speaker_ids={"spkA": 0, "spkB": 1, "spkC": 2})
    assert own[1]["spkr"].tolist() == [1]
    with pytest.raises(DataError, match="no id for 1 speakers"):
        VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150, f0_stats=stats,
                       speaker_ids={"spkA": 0})
    with pytest.raises(DataError, match="needs f0_stats"):
        VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=f0_150)
    with pytest.raises(DataError, match="multiple of the alignment block 1280"):
        VocoderDataset(ramp_dataset, FakeEncoder(320), f0_extractor=None, segment_size=8960 + 320,
                       align_f0_codes=True)


def test_unit_file_source_and_real_f0(tiny_corpus, tmp_path):
    ds = load_dataset("manifest", tiny_corpus)
    rng = np.random.default_rng(0)
    entries = {u.utt_id: UnitEntry(f"data/wavs_16khz/{u.utt_id}.wav",
                                   rng.integers(0, 100, 39), "hubert", 0.8) for u in ds}
    unit_file = write_unit_file(tmp_path / "train.txt", list(entries.values())[:5])
    stats = F0Stats(global_stats=SpeakerF0(160.0, 40.0),
                    speakers={"spkA": SpeakerF0(150.0, 30.0)}, extractor="pyworld")
    with pytest.warns(UserWarning, match="1 of 6 utterances have no units"):
        vds = VocoderDataset(ds, unit_file, f0_extractor="pyworld", f0_stats=stats,
                             cache_dir=tmp_path / "f0cache", seed=3)
    assert len(vds) == 5 and vds.code_hop == 320 and vds.dropped == [ds.utterances[5].utt_id]
    for i, utt in enumerate(vds.utterances):
        item = vds[i]
        start = vds.crop_start(i, 39 * 320)               # 12480 trimmed samples >= segment
        wav = load_training_audio(utt.path)
        assert np.abs(wav).max() == pytest.approx(0.95, abs=1e-6)
        assert np.allclose(item["audio"][0].numpy(), wav[start:start + SEG])
        assert item["code"].tolist() == entries[utt.utt_id].units[start // 320:][:28].tolist()
        track = extract_f0(wav, "pyworld")                # whole-utterance track, then cropped
        expect = stats.normalize(track[start // 80:start // 80 + 112], utt.speaker)
        assert np.allclose(item["f0"][0].numpy(), expect, atol=1e-6)
        assert (item["f0"][0].numpy() != 0).sum() > 20    # the tones are voiced
    assert vds.f0_cache.computed == 5
    with pytest.warns(UserWarning):
        again = VocoderDataset(ds, unit_file, f0_extractor="pyworld", f0_stats=stats,
                               cache_dir=tmp_path / "f0cache", seed=3)
    again.precompute()
    assert again.f0_cache.computed == 0                   # served from the disk cache
    assert torch.equal(again[2]["f0"], vds[2]["f0"])
    with pytest.warns(UserWarning) as record:
        VocoderDataset(ds, unit_file, f0_extractor="yaapt", f0_stats=stats)
    assert any("computed with 'pyworld' but training F0 uses 'yaapt'" in str(w.message)
               for w in record)
    with pytest.raises(DataError, match="none of the 6 utterances has units"):
        VocoderDataset(ds, [UnitEntry("x/other.wav", [1, 2], "hubert")], f0_extractor=None)


def test_f0_dataset(ramp_dataset):
    stats = F0Stats(global_stats=SpeakerF0(0.0, 2.0))
    fds = F0Dataset(ramp_dataset, f0_extractor=frame_index_f0, f0_stats=stats, seed=5)
    for i, utt in enumerate(ramp_dataset):
        item = fds[i]
        frames = LENGTHS[utt.utt_id] // 80
        f0 = item["f0"][0].numpy() * 2.0                  # undo (f0 - 0) / 2
        assert item["f0"].shape == (1, 208)
        first = int(np.rint(f0[0])) - 1
        assert np.array_equal(f0, (first + np.arange(208)) % frames + 1)
    assert torch.equal(fds[0]["f0"], F0Dataset(ramp_dataset, f0_extractor=frame_index_f0,
                                                f0_stats=stats, seed=5)[0]["f0"])
    whole = F0Dataset(ramp_dataset, f0_extractor=frame_index_f0, f0_normalize=False,
                      segment_size=None)
    for i, n in enumerate(LENGTHS.values()):
        f0 = whole[i]["f0"][0].numpy()
        assert len(f0) == (n // 80) // 16 * 16 and f0[0] == 1
    batch = collate([fds[0], fds[1]])
    assert batch["f0"].shape == (2, 1, 208) and batch["spkr"].shape == (2, 1)
    with pytest.raises(DataError, match="multiple of 1280"):
        F0Dataset(ramp_dataset, f0_extractor=frame_index_f0, f0_normalize=False,
                  segment_size=16000)


def test_extract_f0_conventions():
    x = harmonic_signal()                                  # 1.5 s, known contour, random phases
    n = len(x) // 80
    wav = peak_normalize(x)
    yaapt = extract_f0(wav, "yaapt")
    world = extract_f0(wav, "pyworld")
    assert yaapt.shape == world.shape == (n,) and yaapt.dtype == np.float32
    # frame k is centred on sample 80 k: compare with the known contour inside segments
    from conftest import contour
    truth = contour(np.arange(n) * 0.005)
    inner = (truth > 0) & (contour(np.arange(n) * 0.005 - 0.03) > 0) & \
        (contour(np.arange(n) * 0.005 + 0.03) > 0)
    for track in (yaapt, world):
        err = np.abs(track[inner] - truth[inner]) / truth[inner]
        assert np.median(err) < 0.03
    # YAAPT failure -> zeros of the right length (reference behaviour); 200 samples = 3 frames
    assert extract_f0(wav[:200], "yaapt").tolist() == [0.0, 0.0]
    assert extract_f0(wav[:79], "pyworld").shape == (0,)
    with pytest.raises(DataError, match="unknown F0 method"):
        extract_f0(wav, "crepe")


def test_real_reference_units_with_real_audio():
    """LJ test.txt units + the LJSpeech files of the shared subset (22.05 kHz -> 16 kHz)."""
    lj = SHARED / "corpora/ljspeech_coqui_subset"
    unit_file = SHARED / "units/LJSpeech/hubert100/test.txt"
    if not lj.is_dir() or not unit_file.is_file():
        pytest.skip("shared LJSpeech subset / units not available")
    ds = load_dataset("ljspeech", lj)
    with pytest.warns(UserWarning, match="have no units"):
        vds = VocoderDataset(ds, unit_file, f0_extractor=None, segment_size=None)
    assert [u.utt_id for u in vds.utterances] == ["LJ001-0023", "LJ001-0032"]
    vds.precompute()
    for i, utt in enumerate(vds.utterances):
        item = vds[i]
        units = vds.unit_source.entry_for(utt).units
        n = item["code"].shape[0]
        assert item["audio"].shape[-1] == n * 320 and n % 4 == 0
        assert item["code"].tolist() == units[:n].tolist()
        assert len(units) - n < 8               # lost to trimming: at most a few frames
    # units of the silence-trimmed VCTK files do not fit this differently trimmed copy
    vctk = SHARED / "corpora/vctk_autovc_16k"
    vctk_units = SHARED / "units/VCTK/hubert100/test.txt"
    if vctk.is_dir() and vctk_units.is_file():
        with pytest.warns(UserWarning):
            bad = VocoderDataset(load_dataset("manifest", vctk), vctk_units, f0_extractor=None)
        assert len(bad) == 2                    # p225_023_mic2 -> p225_023: stems matched
        with pytest.raises(DataError, match="made from different audio"):
            bad.precompute()


def test_training_audio_with_non_finite_samples_is_refused_with_its_path(tmp_path):
    # peak normalisation would otherwise turn the file into NaN and poison the losses
    from resyn_bench.audio import AudioError

    x = np.sin(np.linspace(0, 100, 8000)).astype(np.float32)
    x[10] = np.inf
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="bad.wav has 1 NaN/inf samples"):
        load_training_audio(path)
