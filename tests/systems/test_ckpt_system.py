"""``ckpt:DIR``: a tiny trained vocoder checkpoint evaluated through the runner."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_training import (
    EnergyUnits,
    f0_config,
    make_corpus,
    vocoder_config,
    write_units,
)

from resyn_bench.safeload import sha256_file


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-step tiny vocoder whose config records a unit-encoder spec ("energy100")."""
    from resyn_bench.systems.encoders import base
    from resyn_bench.systems.vocoder.train import train_f0_quantizer, train_vocoder

    mp = pytest.MonkeyPatch()
    real = base.load_unit_encoder
    mp.setattr(base, "load_unit_encoder",
               lambda spec, **kw: EnergyUnits() if spec == "energy100" else real(spec, **kw))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ckpt")
    root = make_corpus(tmp / "corpus", n_per_speaker=4)
    units = write_units(root, tmp / "units.jsonl")
    train_f0_quantizer(f0_config(root), tmp / "f0q", max_steps=1, device="cpu")
    cfg = vocoder_config(root, units, tmp / "f0q", "input_training_file=null",
                         "unit_encoder=energy100")
    train_vocoder(cfg, tmp / "voc", max_steps=2, device="cpu")
    # a second one trained from the unit file only: encoding needs -o units=...
    train_vocoder(vocoder_config(root, units, tmp / "f0q"), tmp / "voc_file", max_steps=1,
                  device="cpu")
    torch.set_num_threads(n)
    yield {"root": root, "voc": tmp / "voc", "voc_file": tmp / "voc_file", "tmp": tmp}
    mp.undo()


@pytest.fixture
def ckpt_registered():
    from resyn_bench import registry

    had = "ckpt" in registry.SYSTEMS
    if not had:
        registry.register_system("ckpt", "resyn_bench.systems.vocoder.system:CheckpointSystem",
                                 "a trained unit vocoder folder", takes_argument="DIR")
    yield
    if not had:
        registry.SYSTEMS.pop("ckpt", None)


def test_runner_resynthesizes_through_the_checkpoint(checkpoint, ckpt_registered, tmp_path):
    from resyn_bench.audio import load_audio
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest

    root = checkpoint["root"]
    res = run(RunConfig(system=f"ckpt:{checkpoint['voc']}", dataset="manifest", data_root=str(root),
                        out=str(tmp_path / "run"), metrics="pitch",
                        # the test's unit encoder is patched into this process only
                        isolate=False), progress=False)
    assert res.n_total == 8 and res.n_failed == 0
    manifest = read_manifest(tmp_path / "run")
    system = manifest["system"]
    ckpt = checkpoint["voc"] / "g_00000002"
    assert system["checkpoint"] == {"path": str(ckpt), "step": 2, "sha256": sha256_file(ckpt)}
    streams = {s["name"]: s for s in system["streams"]}
    assert (streams["units"]["frame_rate"], streams["units"]["vocab_size"]) == (100.0, 100)
    assert (streams["f0_codes"]["frame_rate"], streams["f0_codes"]["vocab_size"]) == (12.5, 20)
    assert streams["speaker"]["frame_rate"] is None and streams["speaker"]["vocab_size"] == 2
    assert system["units"] == "energy100" and system["f0_extractor"] == "pyworld"
    # every output is 16 kHz audio as long as its input (padding to F0 codes is cut back)
    with open(root / "manifest.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        ref = load_audio(root / row["path"])
        out = load_audio(tmp_path / "run" / "outputs" / f"{row['utt_id']}.wav")
        assert out.sample_rate == 16000 and len(out.samples) == len(ref.samples)
        assert np.all(np.isfinite(out.samples))


def test_voice_conversion_run_uses_each_utterances_target(checkpoint, ckpt_registered, tmp_path):
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_records

    root = checkpoint["root"]
    res = run(RunConfig(system=f"ckpt:{checkpoint['voc']}", dataset="manifest", data_root=str(root),
                        out=str(tmp_path / "vc"), metrics="pitch", vc_targets=1, experiment="vc",
                        isolate=False),
              progress=False)
    assert res.n_total == 8 and res.n_failed == 0        # 2 speakers: one other voice each
    for r in read_records(tmp_path / "vc"):
        assert r["target_speaker"] != r["speaker"]
        assert r["utt_id"].endswith(f"__to_{r['target_speaker']}")


def test_encode_decode_streams(checkpoint):
    from resyn_bench.audio import load_audio
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.base import SystemFailure
    from resyn_bench.systems.vocoder.system import CheckpointSystem

    system = CheckpointSystem(str(checkpoint["voc"]))
    utt = load_dataset("manifest", checkpoint["root"]).utterances[0]
    audio = load_audio(utt.path)          # 1.2 s = 19200 samples = 15 F0 codes
    streams = system.encode(audio, utt)
    assert streams["units"].shape == (120,) and streams["units"].dtype == np.int64
    assert np.array_equal(streams["units"], EnergyUnits().encode(audio.samples))
    assert streams["f0_codes"].shape == (15,) and streams["f0_codes"].max() < 20
    assert streams["speaker"] == 0 and streams.meta["speaker_name"] == "spkA"
    y1, y2 = system.decode(streams).samples, system.decode(streams).samples
    assert np.array_equal(y1, y2) and len(y1) == len(audio.samples)
    # the speaker stream drives the output: another LUT row gives other audio
    other = type(streams)(dict(streams.data, speaker=1), streams.sample_rate, streams.meta)
    assert not np.array_equal(system.decode(other).samples, y1)
    assert system.speakers() == ["spkA", "spkB"]

    stranger = type(utt)("x", "spkZ", utt.path)
    with pytest.raises(SystemFailure, match="not seen in training.*-o speaker=NAME"):
        system.encode(audio, stranger)
    vc = CheckpointSystem(str(checkpoint["voc"]), speaker="spkB")
    s = vc.encode(audio, stranger)   # unseen source speaker converted to a training voice
    assert s["speaker"] == 1 and np.array_equal(s["units"], streams["units"])


def test_clear_errors(checkpoint, tmp_path):
    from resyn_bench.systems.vocoder.system import (
        CheckpointSystem,
        CheckpointSystemError,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointSystemError, match="no generator checkpoint.*resyn-bench train vocoder --config"):
        CheckpointSystem(str(empty))
    with pytest.raises(CheckpointSystemError, match="-o units=SPEC"):
        CheckpointSystem(str(checkpoint["voc_file"]))
    system = CheckpointSystem(str(checkpoint["voc_file"]), units="energy100")
    assert system.describe()["checkpoint"]["step"] == 1
    with pytest.raises(CheckpointSystemError, match="not a training speaker"):
        CheckpointSystem(str(checkpoint["voc"]), speaker="nobody")
    with pytest.raises(CheckpointSystemError, match="g_00000007"):
        CheckpointSystem(str(checkpoint["voc"]), step=7)
    cfg = json.loads((checkpoint["voc"] / "config.json").read_text())
    assert cfg["unit_encoder"] == "energy100"


def test_f0_edits_reach_the_quantizer(checkpoint, monkeypatch):
    """-o f0_edit=shift:+N / scale:X edit the F0 in Hz before the speaker normalisation; flat
    puts every voiced frame at the speaker mean (z = 0); unvoiced frames stay 0."""
    from resyn_bench.audio import load_audio
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.vocoder.system import CheckpointSystem, CheckpointSystemError

    utt = load_dataset("manifest", checkpoint["root"]).utterances[0]
    audio = load_audio(utt.path)
    seen = {}

    def contour(edit):
        system = CheckpointSystem(str(checkpoint["voc"]), f0_edit=edit)
        real = system.model.quantizer.encode_indices

        def spy(z):
            seen[edit] = z.reshape(-1).numpy().astype(np.float64)
            return real(z)

        monkeypatch.setattr(system.model.quantizer, "encode_indices", spy)
        system.encode(audio, utt)
        assert system.describe()["f0_edit"] == edit
        return system, seen[edit]

    system, z = contour(None)
    mean, std = system.f0_stats.lookup(utt.speaker)
    hz = np.where(z != 0, z * std + mean, 0.0)
    voiced = z != 0
    assert voiced.sum() > 10
    _, z_up = contour("shift:+12")
    assert np.allclose(np.where(voiced, z_up * std + mean, 0.0), 2.0 * hz, rtol=1e-4, atol=1e-3)
    assert np.array_equal(z_up != 0, voiced)
    _, z_flat = contour("flat")
    assert not z_flat[voiced].any()
    _, z_still = contour("scale:0")     # no excursion left: one F0 (the utterance's mean) for all
    still = z_still[voiced] * std + mean
    assert np.ptp(still) < 1e-3 * still.mean()
    assert still[0] == pytest.approx(np.exp(np.log(hz[voiced]).mean()), rel=1e-4)
    with pytest.raises(CheckpointSystemError, match="shift:\\+N"):
        CheckpointSystem(str(checkpoint["voc"]), f0_edit="louder")


def test_bf16_precision_option(checkpoint):
    from resyn_bench.audio import load_audio
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.options import OptionError
    from resyn_bench.systems.vocoder.system import CheckpointSystem

    utt = load_dataset("manifest", checkpoint["root"]).utterances[0]
    audio = load_audio(utt.path)
    fp32 = CheckpointSystem(str(checkpoint["voc"]))
    bf16 = CheckpointSystem(str(checkpoint["voc"]), precision="bf16")
    assert fp32.describe()["precision"] == "fp32" and bf16.describe()["precision"] == "bf16"
    y32 = fp32.decode(fp32.encode(audio, utt)).samples
    y16 = bf16.decode(bf16.encode(audio, utt)).samples
    assert y16.dtype == np.float32 and y16.shape == y32.shape
    snr = 10 * np.log10(np.sum(y32.astype(np.float64) ** 2) / np.sum((y32.astype(np.float64) - y16) ** 2))
    assert snr >= 30.0
    with pytest.raises(OptionError, match="precision must be one of fp32, bf16"):
        CheckpointSystem(str(checkpoint["voc"]), precision="fp16")
