"""Vocoder training in readable pieces: state / schedule / log / inputs / loop modules, and the
vocoder and F0-quantizer trainers as peers over the shared loop (no torch work here)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("torch")

VOCODER = Path(__file__).resolve().parents[2] / "systems" / "vocoder"
HOOKS = ("build", "load_checkpoint", "train_step", "validate", "save_checkpoint", "epoch_end",
         "learning_rate", "fingerprint", "n_parameters")


def test_trainers_are_peers_over_the_shared_loop():
    from resyn_bench.systems.vocoder.training import F0QuantizerTrainer, Trainer, VocoderTrainer

    for cls in (VocoderTrainer, F0QuantizerTrainer):
        assert cls.__bases__ == (Trainer,)
        assert "run" not in vars(cls)                      # the loop is shared, not copied
        missing = [h for h in HOOKS if h not in vars(cls)]
        assert not missing, f"{cls.__name__} leaves hooks to the base: {missing}"
    assert not issubclass(F0QuantizerTrainer, VocoderTrainer)
    for hook in HOOKS:
        with pytest.raises(NotImplementedError):
            getattr(Trainer, hook)(object.__new__(Trainer), *([0] if hook in (
                "load_checkpoint", "train_step", "save_checkpoint") else []))


def test_public_entry_points_keep_their_path():
    from resyn_bench.systems.vocoder import train, training

    for name in train.__all__:
        assert getattr(train, name) is getattr(training, name)
    assert train.train_vocoder.__module__.endswith("training.vocoder_trainer")
    assert train.train_f0_quantizer.__module__.endswith("training.f0_trainer")


def test_pieces_stay_small_and_import_no_private_names():
    files = sorted((VOCODER / "training").glob("*.py")) + [VOCODER / "train.py"]
    assert {p.stem for p in files} >= {"state", "schedule", "log", "inputs", "loop",
                                       "vocoder_trainer", "f0_trainer", "train"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) < 400, f"{path.name} grew past 400 lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resyn_bench"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name}:{node.lineno} imports {private}"
