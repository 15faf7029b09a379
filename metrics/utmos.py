"""UTMOS: the UTMOS22 strong learner, a non-intrusive MOS proxy next to DNSMOS (``utmos`` group).

Reads the checkpoint SpeechMOS's ``torch.hub`` entry ``utmos22_strong`` loads
(``utmos22_strong_step7459_v1.pt``, a plain state dict; weights derived from sarulab-speech's
UTMOS22 strong learner, MIT licence) into an in-house module; no SpeechMOS or torchaudio code.

Architecture (the checkpoint's names):

- ``wav2vec2.*``: wav2vec 2.0 Base in fairseq names (group-norm conv front end without bias,
  post-LN transformer, 12 x 768-d blocks) - :class:`resyn_bench.nn.hubert.HubertModel`, which
  shares the layout. The raw 16 kHz waveform goes in (no waveform normalisation), the output of
  the last block comes out. SpeechMOS pads the frame sequence to an even length with a masked
  zero frame and drops it again, which leaves every real frame unchanged, so no padding here.
- ``domain_emb`` [1, 128] and ``judge_emb`` [1, 128]: fixed embeddings concatenated to every
  frame (768 + 128 + 128 = 1024 features);
- ``blstm``: one bidirectional LSTM layer, 512 units per direction;
- ``projection.0`` Linear(1024, 2048) -> ReLU -> ``projection.2`` Linear(2048, 1);
- the score is the mean over frames of the projection, times 2, plus 3.

The checkpoint is catalogued as ``utmos22-strong`` (GitHub release asset; no sha256 is
documented, so the hash of the file used is recorded with every number). Nothing is
downloaded at run time.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.metrics.base import MetricError, MetricGroup, MetricSpec, Score

CATALOGUE_NAME = "utmos22-strong"

_SPECS = (
    MetricSpec("utmos.mos", "UTMOS", higher_is_better=True, unit="MOS",
               description="UTMOS22 strong learner predicted naturalness MOS (1-5 scale, "
                           "non-intrusive; SpeechMOS utmos22_strong checkpoint)"),
)


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MetricError(f"utmos needs torch ({exc}); pip install 'resyn-bench[models]'") from None
    return torch


def build_utmos(torch, sd: dict):
    """The UTMOS22 strong module for the tensors in ``sd`` (SpeechMOS layout)."""
    from resyn_bench.nn.hubert import HubertModel, _arch_from_fairseq_tensors
    from resyn_bench.nn.wavlm import legacy_weight_norm_names

    nn = torch.nn
    ssl_sd = legacy_weight_norm_names(
        {k.removeprefix("wav2vec2."): v for k, v in sd.items() if k.startswith("wav2vec2.")})
    if not ssl_sd or "blstm.weight_ih_l0" not in sd:
        raise MetricError("utmos: not a UTMOS22 strong checkpoint (expected 'wav2vec2.*', "
                          f"'blstm.*', 'projection.*' tensors; found e.g. {sorted(sd)[:4]})")
    arch = _arch_from_fairseq_tensors(ssl_sd)

    class UTMOS(nn.Module):
        def __init__(self):
            super().__init__()
            self.wav2vec2 = HubertModel(arch)
            self.domain_emb = nn.Parameter(torch.zeros(sd["domain_emb"].shape))
            self.judge_emb = nn.Parameter(torch.zeros(sd["judge_emb"].shape))
            hidden = int(sd["blstm.weight_hh_l0"].shape[1])
            feat = arch.embed_dim + self.domain_emb.shape[1] + self.judge_emb.shape[1]
            self.blstm = nn.LSTM(feat, hidden, batch_first=True, bidirectional=True)
            proj = int(sd["projection.0.weight"].shape[0])
            self.projection = nn.Sequential(nn.Linear(2 * hidden, proj), nn.ReLU(),
                                            nn.Linear(proj, 1))

        def forward(self, wav):  # [B, N] 16 kHz -> [B]
            units = self.wav2vec2(wav, normalize=False)
            b, t, _ = units.shape
            cat = torch.cat([units, self.domain_emb[:, None].expand(b, t, -1),
                             self.judge_emb[:, None].expand(b, t, -1)], dim=2)
            frames = self.projection(self.blstm(cat)[0])
            return frames.mean(dim=1).squeeze(1) * 2 + 3

    model = UTMOS()
    model.wav2vec2.load_fairseq_state_dict(ssl_sd)
    rest = {k: v for k, v in sd.items() if not k.startswith("wav2vec2.")}
    own = {k for k in model.state_dict() if not k.startswith("wav2vec2.")}
    missing, extra = sorted(own - set(rest)), sorted(set(rest) - own)
    if missing or extra:
        raise MetricError(f"utmos: checkpoint does not match the UTMOS22 strong layout: "
                          f"missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for k, p in model.state_dict().items():
            if k in rest:
                if tuple(p.shape) != tuple(rest[k].shape):
                    raise MetricError(f"utmos: {k} has shape {tuple(rest[k].shape)}, expected "
                                      f"{tuple(p.shape)}")
                p.copy_(rest[k].float())
    return model.eval()


class UTMOSMetrics(MetricGroup):
    """``utmos.mos``: UTMOS22 strong predicted MOS of the output (no reference needed).

    Options: ``checkpoint`` (a file in the SpeechMOS layout; default the catalogue's
    ``utmos22-strong``), ``device`` (default cuda when available)."""

    name = "utmos"
    specs = _SPECS
    sample_rate = 16000

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        self.checkpoint = checkpoint
        self._device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        from resyn_bench.distributed import resolve_device

        return resolve_device(self._device)

    def _path(self) -> Path:
        from resyn_bench import catalogue

        if self.checkpoint is not None:
            p = Path(self.checkpoint).expanduser()
            if not p.is_file():
                raise MetricError(f"utmos: checkpoint {p} not found")
            return p
        p = catalogue.catalogue_path(CATALOGUE_NAME)
        if not p.is_file():
            raise MetricError(str(catalogue.missing_file_error(CATALOGUE_NAME,
                                                               what="the utmos metric group")))
        return p

    def settings(self) -> dict[str, Any]:
        from resyn_bench.core.hashing import sha256_file_or_none

        try:
            p = self._path()
            name, sha = p.name, sha256_file_or_none(p)
        except MetricError:
            name, sha = CATALOGUE_NAME, None
        return {"model": "UTMOS22 strong learner (SpeechMOS utmos22_strong layout, in-house "
                         "module)", "checkpoint": name, "checkpoint_sha256": sha,
                "input": "16 kHz mono, whole utterance, no normalisation",
                "score": "mean over frames * 2 + 3", "device": self.device}

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            torch = _torch()
            from resyn_bench.safeload import load_checkpoint_object

            obj, _ = load_checkpoint_object(self._path(), (), what="utmos checkpoint")
            if not isinstance(obj, dict):
                raise MetricError("utmos: the checkpoint is not a state dict")
            sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            self._model = build_utmos(torch, sd).to(self.device)

    def release(self) -> None:
        with self._lock:
            self._model = None

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        return {}

    def predict(self, samples: np.ndarray) -> float:
        torch = _torch()
        if self._model is None:
            self.load()
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise MetricError("utmos: audio contains NaN/inf")
        if x.size < 400:
            raise MetricError(f"utmos: {x.size} samples is shorter than one frame (400)")
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x))[None].to(self.device)
            v = float(self._model(t)[0])
        if not math.isfinite(v):
            raise MetricError("utmos: the model returned a non-finite score")
        return v

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        return Score(values={"utmos.mos": self.predict(self.samples_at_rate(output, "output"))})


__all__ = ["UTMOSMetrics", "build_utmos", "CATALOGUE_NAME"]
