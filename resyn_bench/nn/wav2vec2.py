"""wav2vec 2.0 CTC recognisers (Hugging Face layout) on the in-house HuBERT transformer.

The paper measured content with a wav2vec 2.0 CTC ASR; this module loads the published
Hugging Face folders of

- ``facebook/wav2vec2-base-960h`` (group-norm feature extractor: one GroupNorm after the first
  conv, post-LN transformer, no conv bias),
- ``facebook/wav2vec2-large-960h-lv60-self`` (``do_stable_layer_norm``: a LayerNorm after every
  conv, conv bias, pre-LN transformer with the encoder LayerNorm after the last block),
- ``facebook/wav2vec2-lv-60-espeak-cv-ft`` (the same large architecture with an espeak IPA phone
  vocabulary),

and runs them on CPU or CUDA (fairseq's fine-tuned CTC checkpoints, e.g. ``wav2vec_small_960h.pt``
with ``dict.ltr.txt``, load too: :func:`read_fairseq_ctc`). A folder holds ``config.json``, the weights
(``model.safetensors`` or ``pytorch_model.bin``, loaded with torch's weights-only unpickler)
and ``vocab.json``; ``preprocessor_config.json``, ``special_tokens_map.json`` and
``tokenizer_config.json`` are read when present.

The encoder is :class:`resyn_bench.nn.hubert.HubertModel`: wav2vec 2.0 and HuBERT share the
conv front end, feature projection, convolutional positional embedding and transformer blocks
(the same parameter layout under a ``wav2vec2.`` instead of ``hubert.`` prefix). The CTC head
is ``lm_head`` (Linear hidden -> vocabulary) on the last encoder output.

Input normalisation follows ``Wav2Vec2FeatureExtractor`` (``do_normalize``, true for all three
models): zero mean and unit variance over the utterance, ``(x - mean) / sqrt(var + 1e-7)``.

Decoding is greedy CTC: arg max per frame, repeated ids collapsed, the blank (the pad token,
id 0 in these vocabularies) and the other special tokens (``<s>``, ``</s>``, ``<unk>``)
dropped. A letter vocabulary (with the ``|`` word delimiter) is read as text, ``|`` -> space;
a phone vocabulary (no word delimiter, multi-character symbols) as a list of phones.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resyn_bench.nn.hubert import (
    HubertArch,
    HubertModel,
    arch_from_hf_config,
    hf_to_fairseq_state_dict,
)

log = logging.getLogger(__name__)

__all__ = ["CTCVocab", "Wav2Vec2CTC", "Wav2Vec2Recognizer", "ctc_greedy", "load_wav2vec2_ctc",
           "normalise_waveform", "read_fairseq_ctc", "read_fairseq_dict", "read_vocab",
           "read_wav2vec2_folder", "WEIGHT_FILES"]

#: weight files looked for in a folder, in this order
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Wav2Vec2FeatureExtractor's variance floor
NORM_EPS = 1e-7
_SPECIAL_DEFAULTS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass
class CTCVocab:
    """Id -> token table of a CTC head."""

    tokens: list[str]
    blank: int
    #: ids never emitted as output (blank, bos, eos, unk)
    special: frozenset[int] = field(default_factory=frozenset)
    word_delimiter: str | None = "|"

    @property
    def unit(self) -> str:
        """``"letters"`` (text with a word delimiter) or ``"phones"`` (symbol sequence)."""
        normal = [t for i, t in enumerate(self.tokens) if i not in self.special]
        if (self.word_delimiter and self.word_delimiter in normal
                and all(len(t) == 1 for t in normal)):
            return "letters"
        return "phones"

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids if i not in self.special]

    def ids_to_text(self, ids: Iterable[int]) -> str:
        toks = self.ids_to_tokens(ids)
        if self.unit == "letters":
            text = "".join(" " if t == self.word_delimiter else t for t in toks)
            return " ".join(text.split())
        return " ".join(t for t in toks if t != self.word_delimiter)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); replace it with the published "
                         f"file") from None


def _token_name(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<pad>", ...} in newer tokenizer files
        value = value.get("content")
    return str(value) if value is not None else None


def read_vocab(folder: str | Path, config: dict | None = None) -> CTCVocab:
    """The CTC vocabulary of a Hugging Face folder (``vocab.json`` plus the special tokens of
    ``special_tokens_map.json`` / ``tokenizer_config.json`` when present)."""
    folder = Path(folder)
    vfile = folder / "vocab.json"
    if not vfile.is_file():
        raise FileNotFoundError(f"{folder} has no vocab.json (the CTC vocabulary of a "
                                f"Wav2Vec2ForCTC folder)")
    raw = _read_json(vfile)
    if raw and all(isinstance(v, dict) for v in raw.values()):
        # multilingual layout {"lang": {token: id}}: take English if there, else the only one
        raw = raw.get("en") or raw.get("en-us") or next(iter(raw.values()))
    ids = sorted(int(i) for i in raw.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"{vfile}: token ids are not 0..{len(ids) - 1}")
    tokens = [""] * len(ids)
    for tok, i in raw.items():
        tokens[int(i)] = str(tok)
    special_names: dict[str, str | None] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = folder / name
        if p.is_file():
            d = _read_json(p)
            for key in ("pad_token", "bos_token", "eos_token", "unk_token", "word_delimiter_token"):
                if key in d and key not in special_names:
                    special_names[key] = _token_name(d[key])
    index = {t: i for i, t in enumerate(tokens)}
    pad = special_names.get("pad_token")
    if pad in index:
        blank = index[pad]
    elif config and isinstance(config.get("pad_token_id"), int) \
            and 0 <= config["pad_token_id"] < len(tokens):
        blank = int(config["pad_token_id"])
    elif "<pad>" in index:
        blank = index["<pad>"]
    else:
        raise ValueError(f"{folder}: cannot tell the CTC blank (no pad token in "
                         f"special_tokens_map.json/tokenizer_config.json, no pad_token_id in "
                         f"config.json, no '<pad>' in vocab.json)")
    special = {blank}
    for key, default in zip(("bos_token", "eos_token", "unk_token"), _SPECIAL_DEFAULTS[1:], strict=True):
        tok = special_names.get(key, default)
        if tok in index:
            special.add(index[tok])
    delim = special_names.get("word_delimiter_token", "|") if (
        "word_delimiter_token" in special_names) else "|"
    return CTCVocab(tokens=tokens, blank=blank, special=frozenset(special),
                    word_delimiter=delim if delim in index else None)


def ctc_greedy(ids: Iterable[int], blank: int) -> list[int]:
    """Best-path CTC: collapse runs of the same id, then drop the blank."""
    out, prev = [], None
    for i in ids:
        i = int(i)
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def normalise_waveform(x: np.ndarray, eps: float = NORM_EPS) -> np.ndarray:
    """``Wav2Vec2FeatureExtractor`` normalisation: (x - mean) / sqrt(var + 1e-7)."""
    x = np.asarray(x, dtype=np.float32)
    return ((x - x.mean()) / np.sqrt(x.var() + eps)).astype(np.float32)


class Wav2Vec2CTC(nn.Module):
    """Encoder (HuBERT/wav2vec 2.0 transformer, whole stack) + ``lm_head``."""

    def __init__(self, arch: HubertArch, vocab_size: int):
        super().__init__()
        self.encoder = HubertModel(arch)
        self.lm_head = nn.Linear(arch.embed_dim, int(vocab_size))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, T, V]
        return self.lm_head(self.encoder(wav, normalize=False))


def read_wav2vec2_folder(path: str | Path, trusted_sha256: Iterable[str] | str = ()
                         ) -> tuple[HubertArch, dict, dict, CTCVocab, bool, dict]:
    """(arch, encoder state dict in fairseq names, lm_head tensors, vocabulary, do_normalize,
    config) of a Hugging Face ``Wav2Vec2ForCTC`` folder."""
    from resyn_bench.safeload import load_checkpoint_object, read_safetensors

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"wav2vec2 model folder not found: {folder} (expected a "
                                f"Hugging Face folder with config.json, model.safetensors or "
                                f"pytorch_model.bin, and vocab.json)")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; expected a Hugging Face "
                                f"Wav2Vec2ForCTC folder")
    cfg = _read_json(cfg_file)
    mtype = cfg.get("model_type", "wav2vec2")
    if mtype not in ("wav2vec2", "hubert"):
        raise ValueError(f"{cfg_file}: model_type {mtype!r} is not wav2vec2 (or hubert)")
    if cfg.get("add_adapter"):
        raise ValueError(f"{cfg_file}: models with an adapter (add_adapter) are not supported")
    arch = arch_from_hf_config(cfg)
    for name in WEIGHT_FILES:
        wfile = folder / name
        if wfile.is_file():
            break
    else:
        raise FileNotFoundError(f"{folder} has neither {' nor '.join(WEIGHT_FILES)}")
    if wfile.suffix == ".safetensors":
        sd = read_safetensors(wfile)
    else:
        sd, _ = load_checkpoint_object(wfile, trusted_sha256, what="wav2vec2 weights")
    sd = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    head = {k.removeprefix("lm_head."): v for k, v in sd.items() if k.startswith("lm_head.")}
    if set(head) != {"weight", "bias"}:
        raise KeyError(f"{wfile} has no CTC head (lm_head.weight/bias): is it a "
                       f"Wav2Vec2ForCTC checkpoint?")
    body = {}
    for k, v in sd.items():
        if k.startswith("lm_head."):
            continue
        for prefix in ("wav2vec2.", "hubert."):
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        body[k] = v
    enc = hf_to_fairseq_state_dict(body, arch.extractor_mode)
    enc = {k: v for k, v in enc.items()
           if not k.startswith(("quantizer.", "project_q.", "project_hid.", "mask_emb"))}
    vocab = read_vocab(folder, cfg)
    if int(head["weight"].shape[0]) != len(vocab.tokens):
        raise ValueError(f"{folder}: lm_head has {head['weight'].shape[0]} outputs but "
                         f"vocab.json has {len(vocab.tokens)} tokens")
    pre = folder / "preprocessor_config.json"
    normalize = bool(_read_json(pre).get("do_normalize", True)) if pre.is_file() else True
    return arch, enc, head, vocab, normalize, cfg


class Wav2Vec2Recognizer:
    """A loaded CTC model: ``logits(wav)``, ``decode_ids(wav)``, ``transcribe(wav)`` (text of a
    letter model) and ``phones(wav)`` (symbols of a phone model), for 16 kHz mono float audio."""

    sample_rate = 16000

    def __init__(self, model: Wav2Vec2CTC, vocab: CTCVocab, normalize: bool = True,
                 device: str | torch.device = "cpu", source: str | None = None,
                 norm_eps: float = NORM_EPS):
        self.model = model.eval().to(device)
        self.vocab = vocab
        self.normalize = bool(normalize)
        #: variance floor of the normalisation (1e-7 as transformers; fairseq's layer_norm: 1e-5)
        self.norm_eps = float(norm_eps)
        self.device = torch.device(device)
        self.source = source
        self._lock = threading.Lock()

    @property
    def unit(self) -> str:
        return self.vocab.unit

    @torch.inference_mode()
    def logits(self, wav) -> np.ndarray:
        x = np.asarray(wav, dtype=np.float32).reshape(-1)
        if x.size < self.model.encoder.arch.receptive_field:
            return np.zeros((0, len(self.vocab.tokens)), dtype=np.float32)
        if self.normalize:
            x = normalise_waveform(x, self.norm_eps)
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).unsqueeze(0)
        with self._lock:
            out = self.model(t)[0]
        return out.float().cpu().numpy()

    def decode_ids(self, wav) -> list[int]:
        lg = self.logits(wav)
        return ctc_greedy(lg.argmax(-1), self.vocab.blank) if len(lg) else []

    def transcribe(self, wav) -> str:
        return self.vocab.ids_to_text(self.decode_ids(wav))

    def phones(self, wav) -> list[str]:
        return [t for t in self.vocab.ids_to_tokens(self.decode_ids(wav))
                if t != self.vocab.word_delimiter]


def read_fairseq_dict(path: str | Path) -> CTCVocab:
    """A fairseq target dictionary (``dict.ltr.txt``: one "symbol count" per line) as the CTC
    vocabulary of a fairseq CTC model: ids 0-3 are fairseq's ``<s>`` (the CTC blank),
    ``<pad>``, ``</s>``, ``<unk>``, then the file's symbols in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fairseq dictionary not found: {path} (the letter dictionary "
                                f"dict.ltr.txt published next to the fine-tuned checkpoint)")
    tokens = ["<s>", "<pad>", "</s>", "<unk>"]
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.rstrip().split(" ")
        if not parts or not parts[0] or parts[0].startswith("#fairseq:"):
            continue
        if len(parts) > 1 and parts[-1] == "#fairseq:overwrite":
            parts = parts[:-1]
        sym = " ".join(parts[:-1]) if len(parts) > 1 else parts[0]
        if sym not in tokens:
            tokens.append(sym)
    return CTCVocab(tokens=tokens, blank=0, special=frozenset({0, 1, 2, 3}),
                    word_delimiter="|" if "|" in tokens else None)


def read_fairseq_ctc(path: str | Path, dict_path: str | Path | None = None,
                     trusted_sha256: Iterable[str] | str = ()
                     ) -> tuple[HubertArch, dict, dict, CTCVocab, bool]:
    """(arch, encoder state dict, head, vocabulary, normalize) of a fairseq wav2vec 2.0 CTC
    fine-tuned checkpoint (``wav2vec_small_960h.pt``, ``wav2vec_vox_960h_pl.pt``, ...):
    ``w2v_encoder.w2v_model.*`` (the encoder, fairseq names), ``w2v_encoder.proj`` (the CTC
    head) and the pre-training sizes in ``cfg.model.w2v_args`` (or legacy ``args``). The
    official files are full pickles: they are read only when their sha256 is trusted."""
    from resyn_bench.nn.hubert import arch_from_fairseq_cfg
    from resyn_bench.safeload import load_checkpoint_object, plain

    path = Path(path)
    obj, _ = load_checkpoint_object(path, trusted_sha256, what="fairseq wav2vec2 CTC checkpoint")
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ValueError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
    cfg = plain(obj.get("cfg")) or {}
    args = plain(obj.get("args")) or {}
    model_cfg = cfg.get("model") or args
    w2v = plain(model_cfg.get("w2v_args")) if isinstance(model_cfg, dict) else None
    if not isinstance(w2v, dict):
        raise ValueError(f"{path}: no w2v_args in the checkpoint config (is it a fine-tuned "
                         f"fairseq wav2vec 2.0 CTC model?)")
    inner_model = w2v.get("model", w2v)
    inner_task = w2v.get("task", w2v)
    arch = arch_from_fairseq_cfg(inner_model, inner_task)
    task = cfg.get("task") or args
    normalize = bool(task.get("normalize", arch.normalize)) if isinstance(task, dict) else arch.normalize
    sd = {str(k): v for k, v in obj["model"].items() if isinstance(v, torch.Tensor)}
    prefix = "w2v_encoder.w2v_model."
    enc = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    head = {k.removeprefix("w2v_encoder.proj."): v for k, v in sd.items()
            if k.startswith("w2v_encoder.proj.")}
    if not enc or set(head) != {"weight", "bias"}:
        raise KeyError(f"{path}: expected '{prefix}*' and 'w2v_encoder.proj.weight/bias' tensors")
    enc = {k: v for k, v in enc.items()
           if not k.startswith(("quantizer.", "project_q.", "final_proj.", "mask_emb"))}
    vocab = read_fairseq_dict(dict_path if dict_path is not None
                              else path.with_name("dict.ltr.txt"))
    if int(head["weight"].shape[0]) != len(vocab.tokens):
        raise ValueError(f"{path}: the CTC head has {head['weight'].shape[0]} outputs but the "
                         f"dictionary gives {len(vocab.tokens)} symbols")
    return arch, enc, head, vocab, normalize


def load_wav2vec2_ctc(path: str | Path, device: str | torch.device = "cpu",
                      trusted_sha256: Iterable[str] | str = (),
                      dict_path: str | Path | None = None) -> Wav2Vec2Recognizer:
    """Load a Hugging Face ``Wav2Vec2ForCTC`` folder, or a fairseq fine-tuned CTC checkpoint
    file with its ``dict.ltr.txt`` (see :func:`read_fairseq_ctc`)."""
    fairseq = Path(path).is_file()
    if fairseq:
        arch, enc, head, vocab, normalize = read_fairseq_ctc(path, dict_path, trusted_sha256)
    else:
        arch, enc, head, vocab, normalize, _ = read_wav2vec2_folder(path, trusted_sha256)
    model = Wav2Vec2CTC(arch, len(vocab.tokens))
    model.encoder.load_fairseq_state_dict(enc)
    with torch.no_grad():
        for name in ("weight", "bias"):
            own = getattr(model.lm_head, name)
            if tuple(own.shape) != tuple(head[name].shape):
                raise ValueError(f"{path}: lm_head.{name} has shape {tuple(head[name].shape)}, "
                                 f"expected {tuple(own.shape)}")
            own.copy_(head[name].float())
    return Wav2Vec2Recognizer(model, vocab, normalize=normalize, device=device, source=str(path),
                              norm_eps=1e-5 if fairseq else NORM_EPS)
