"""Vocoder and F0-quantizer training on a tiny synthetic corpus: checkpoints in the reference
layout, validation logging, and a stopped run that resumes exactly where an uninterrupted one
would be (same optimizer state, same next-step losses, same weights)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from conftest import harmonic_tone, write_manifest

from resyn_bench.systems.vocoder.config import load_config


class EnergyUnits:
    """A weight-free stand-in unit encoder: per 160-sample frame, 50 log-energy bins x a
    zero-crossing flag (100 units). Deterministic, cheap, and tied to the audio content."""

    name = "energy100"
    sample_rate = 16000
    hop_size = 160
    vocab_size = 100

    def encode(self, wav: np.ndarray) -> np.ndarray:
        x = np.asarray(wav, np.float32).reshape(-1)
        n = len(x) // self.hop_size
        frames = x[: n * self.hop_size].reshape(n, self.hop_size)
        energy = np.log((frames ** 2).mean(1) + 1e-8)
        crossings = (np.abs(np.diff(np.sign(frames), axis=1)).mean(1) > 0).astype(np.int64)
        return np.clip(((energy + 18) / 18 * 49).astype(np.int64), 0, 49) + 50 * crossings

    def describe(self) -> dict:
        return {"name": self.name, "hop_size": self.hop_size}


def make_corpus(root: Path, n_per_speaker: int = 5, duration: float = 1.2) -> Path:
    """Two speakers (F0 around 120 / 200 Hz), harmonic tones with moving contours and a gap."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for s, spk in enumerate(["spkA", "spkB"]):
        base = 120.0 if s == 0 else 200.0
        for j in range(n_per_speaker):
            uid = f"{spk}_{j:03d}"
            x = harmonic_tone(lambda t, b=base, j=j: b * (1 + 0.2 * np.sin(2 * np.pi * (0.5 + 0.3 * j) * t)),
                              duration=duration)
            x[int(0.5 * 16000):int(0.6 * 16000)] = 0.0
            sf.write(root / "wavs" / f"{uid}.wav", x, 16000, subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"wavs/{uid}.wav"})
    write_manifest(root, rows)
    return root


def write_units(root: Path, path: Path) -> Path:
    """Our JSONL unit file for the corpus, made with :class:`EnergyUnits`."""
    from resyn_bench.unit_files import UnitEntry, write_unit_file

    enc = EnergyUnits()
    entries = []
    with open(root / "manifest.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            wav, _ = sf.read(root / row["path"], dtype="float32")
            entries.append(UnitEntry(str(root / row["path"]), enc.encode(wav), key="codes",
                                     extra={"utt_id": row["utt_id"], "speaker": row["speaker"]}))
    return write_unit_file(path, entries, key="codes", fmt="jsonl", hop_size=160, vocab_size=100)


def f0_config(root: Path, *extra: str):
    return load_config("tiny-f0", ["dataset=manifest", f"data_root={root}", "validation_size=2",
                                   "batch_size=4", "log_interval=1", "validation_interval=2",
                                   "checkpoint_interval=2", *extra])


def vocoder_config(root: Path, units: Path, quantizer: Path, *extra: str):
    return load_config("tiny", ["dataset=manifest", f"data_root={root}", "validation_size=2",
                                "batch_size=4", "log_interval=1", "validation_interval=2",
                                "checkpoint_interval=2", f"input_training_file={units}",
                                f"f0_quantizer_path={quantizer}", "segment_size=3840",
                                "validation_max_seconds=1.0", *extra])


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Corpus, unit file and a 2-step tiny F0 quantizer, shared by the tests of this module."""
    from resyn_bench.systems.vocoder.train import train_f0_quantizer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("training")
    root = make_corpus(base / "corpus")
    units = write_units(root, base / "units.jsonl")
    train_f0_quantizer(f0_config(root), base / "f0q", max_steps=2, device="cpu")
    torch.set_num_threads(n)
    return {"base": base, "root": root, "units": units, "f0q": base / "f0q"}


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def losses_at(log: list[dict], step: int) -> dict:
    rec = [r for r in log if r.get("step") == step and "loss_g" in r]
    assert len(rec) == 1, (step, log)
    return {k: v for k, v in rec[0].items() if k.startswith("loss") or k == "mel_l1"}


def load(path: Path) -> dict:
    from resyn_bench.safeload import safe_torch_load

    return safe_torch_load(path)


def assert_same_tree(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_f0_quantizer_checkpoint_layout_and_validation(trained):
    from resyn_bench.systems.vocoder.f0_quantizer import load_f0_quantizer

    out = trained["f0q"]
    assert {p.name for p in out.glob("[gd]*_*")} == {"g_00000002", "do_00000002"}
    g = load(out / "g_00000002")
    assert set(g) == {"generator", "optim_g", "steps", "epoch"} and g["steps"] == 2
    _model, cfg, step = load_f0_quantizer(out)
    assert step == 2 and cfg["f0_vq_params"]["emb_width"] == 32
    log = read_log(out)
    val = [r["validation"] for r in log if "validation" in r]
    assert [r["step"] for r in log if "validation" in r] == [0, 2]
    assert all(v["n"] == 2 and np.isfinite(v["f0_mse"]) for v in val)
    stats = json.loads((out / "f0_stats.json").read_text())
    # two synthetic speakers around 120 and 200 Hz (+-20% vibrato): the stats must see that
    assert 100 < stats["speakers"]["spkA"]["mean"] < 140
    assert 170 < stats["speakers"]["spkB"]["mean"] < 230
    assert json.loads((out / "speakers.json").read_text()) == {"spkA": 0, "spkB": 1}


def test_f0_quantizer_resume_equals_uninterrupted(trained, tmp_path, one_thread):
    from resyn_bench.systems.vocoder.train import train_f0_quantizer

    cfg = f0_config(trained["root"])
    a, b = tmp_path / "a", tmp_path / "b"
    train_f0_quantizer(cfg, a, max_steps=4, device="cpu")
    train_f0_quantizer(cfg, b, max_steps=2, device="cpu")
    r = train_f0_quantizer(cfg, b, max_steps=4, device="cpu")
    assert (r.start_step, r.step) == (2, 4)
    assert_same_tree(load(a / "g_00000004"), load(b / "g_00000004"))
    log_a, log_b = read_log(a), read_log(b)
    for step in (3, 4):
        assert next(x for x in log_a if x.get("step") == step and "loss" in x)["loss"] == \
            next(x for x in log_b if x.get("step") == step and "loss" in x)["loss"]


def test_vocoder_trains_and_resumes_exactly(trained, tmp_path, one_thread):
    from resyn_bench.systems.vocoder.train import TrainingError, train_vocoder

    cfg = vocoder_config(trained["root"], trained["units"], trained["f0q"])
    a, b = tmp_path / "a", tmp_path / "b"
    ra = train_vocoder(cfg, a, max_steps=4, device="cpu")
    assert ra.step == 4 and ra.checkpoint == a / "g_00000004"
    names = {p.name for p in a.iterdir()}
    assert {"g_00000002", "do_00000002", "g_00000004", "do_00000004", "config.json",
            "speakers.json", "f0_stats.json", "train_log.jsonl"} <= names
    g = load(a / "g_00000004")
    assert set(g) == {"generator"} and "dict.weight" in g["generator"]
    assert any(k.startswith("quantizer.") for k in g["generator"])
    do = load(a / "do_00000004")
    assert {"mpd", "msd", "optim_g", "optim_d", "steps", "epoch"} <= set(do) and do["steps"] == 4
    saved = json.loads((a / "config.json").read_text())
    assert saved["speaker_map"] == {"spkA": 0, "spkB": 1} and saved["seed"] == 1234
    assert saved["f0_stats"] == str(a / "f0_stats.json")
    assert saved["input_training_file"] == str(trained["units"])  # unit source recorded
    log_a = read_log(a)
    val = {r["step"]: r["validation"] for r in log_a if "validation" in r}
    assert sorted(val) == [0, 2, 4] and all(v["n"] == 2 and v["mel_l1"] > 0 for v in val.values())
    assert all(r["seconds_per_step"] > 0 and r["lr"] > 0 for r in log_a if "loss_g" in r)

    # stop after 2 steps, then resume to 4: same state at 2, same losses and weights after
    train_vocoder(cfg, b, max_steps=2, device="cpu")
    rb = train_vocoder(cfg, b, max_steps=4, device="cpu")
    assert (rb.start_step, rb.step) == (2, 4)
    log_b = read_log(b)
    assert {"event": "resume", "step": 2, "world_size": 1} in log_b
    assert_same_tree(load(a / "do_00000002")["optim_g"], load(b / "do_00000002")["optim_g"])
    assert_same_tree(load(a / "do_00000002")["optim_d"], load(b / "do_00000002")["optim_d"])
    for step in (3, 4):
        assert losses_at(log_a, step) == losses_at(log_b, step)
    assert_same_tree(load(a / "g_00000004"), load(b / "g_00000004"))
    do_a, do_b = load(a / "do_00000004"), load(b / "do_00000004")
    for key in ("mpd", "msd", "optim_g", "optim_d", "scheduler_g", "scheduler_d", "epoch"):
        assert_same_tree(do_a[key], do_b[key], key)
    # the LR decayed once per epoch (2 steps per epoch: epochs 0, 1 done at step 4)
    assert do_a["scheduler_g"]["last_epoch"] == 1
    assert do_a["optim_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.999)

    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train_vocoder(cfg, b, max_steps=6, resume=False, device="cpu")
    with pytest.raises(TrainingError, match="config differs.*batch_size"):
        train_vocoder(cfg.with_overrides({"batch_size": 2}), b, max_steps=6, device="cpu")


def test_vocoder_without_quantizer_says_how_to_train_one(trained, tmp_path):
    from resyn_bench.systems.vocoder.train import TrainingError, train_vocoder

    cfg = vocoder_config(trained["root"], trained["units"], trained["f0q"]).with_overrides(
        {"f0_quantizer_path": None})
    with pytest.raises(TrainingError, match="train f0-quantizer"):
        train_vocoder(cfg, tmp_path / "x", max_steps=1, device="cpu")
    cfg = cfg.with_overrides({"batch_size": 64})
    with pytest.raises(TrainingError):
        train_vocoder(cfg, tmp_path / "y", max_steps=1, device="cpu")


def test_vocoder_without_f0_or_speaker(trained, tmp_path, one_thread):
    """Units only (the fairseq-style single-speaker layout): no quantizer needed."""
    from resyn_bench.systems.vocoder.train import train_vocoder

    cfg = vocoder_config(trained["root"], trained["units"], trained["f0q"], "f0=false",
                         "multispkr=null", "model_in_dim=32", "f0_quantizer_path=null")
    r = train_vocoder(cfg, tmp_path / "u", max_steps=1, device="cpu")
    g = load(r.checkpoint)["generator"]
    assert "spkr.weight" not in g and "f0_dict.weight" not in g
    assert np.isfinite(r.last_losses["loss_g"])


def test_data_selection_holds_out_validation_and_applies_the_speaker_rule(trained):
    from resyn_bench.systems.vocoder.train import select_utterances

    cfg = vocoder_config(trained["root"], trained["units"], trained["f0q"], "validation_size=3")
    train, val, info = select_utterances(cfg)
    assert len(train) == 7 and len(val) == 3
    assert not {u.utt_id for u in train} & {u.utt_id for u in val}
    assert select_utterances(cfg)[1] == val          # seeded: the same on every rank / resume
    assert info["validation"]["held_out"] == [u.utt_id for u in val]
    assert {u.speaker for u in train} == {"spkA", "spkB"}
    single = cfg.with_overrides({"multispkr": "single"})
    train, val, _ = select_utterances(single)        # reference "single": one speaker 'A'
    assert {u.speaker for u in train + val} == {"A"}


def test_reference_unit_file_names_the_audio(trained, tmp_path):
    """A reference train.txt (dict lines, relative audio paths, no trailing newline) is enough:
    the audio resolves against data_root and the speaker comes from the file name ("_")."""
    from resyn_bench.systems.vocoder.train import select_utterances
    from resyn_bench.unit_files import read_unit_file, write_unit_file

    root = trained["root"]
    entries = read_unit_file(trained["units"])
    for e in entries:
        e.audio = str(Path(e.audio).relative_to(root))
        e.extra = {}
    ref = write_unit_file(tmp_path / "train.txt", entries, key="hubert", fmt="reference")
    assert not ref.read_text().endswith("\n") and ref.read_text().startswith("{'audio': 'wavs/")
    cfg = load_config("tiny", [f"input_training_file={ref}", f"data_root={root}", "validation_size=2"])
    train, val, _ = select_utterances(cfg)
    assert len(train) + len(val) == 10
    assert all(u.path.is_file() and u.speaker == u.utt_id.split("_")[0] for u in train + val)


def test_stale_temporary_checkpoint_files_are_removed(tmp_path):
    from resyn_bench.systems.vocoder.train import remove_stale_temp_files

    stale = [".g_00000002.abc123.tmp", ".do_00000002.x.tmp", ".config.json.q1.tmp"]
    kept = ["g_00000001", "do_00000001", ".other.tmp", "notes.tmp", "config.json"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_a_vocoder_folder_serves_as_the_f0_quantizer(trained, tmp_path, one_thread):
    # load_f0_quantizer accepts a vocoder (its quantizer.* keys); its config nests the blocks
    import json

    from resyn_bench.systems.vocoder.train import train_vocoder

    first = tmp_path / "first"
    train_vocoder(vocoder_config(trained["root"], trained["units"], trained["f0q"],
                                 "checkpoint_interval=1"), first, max_steps=1, device="cpu")
    second = tmp_path / "second"
    result = train_vocoder(vocoder_config(trained["root"], trained["units"], first,
                                          "checkpoint_interval=1"), second, max_steps=1,
                           device="cpu")
    assert result.step == 1
    blocks = json.loads((second / "config.json").read_text())["f0_quantizer"]
    assert blocks == json.loads((first / "config.json").read_text())["f0_quantizer"]
