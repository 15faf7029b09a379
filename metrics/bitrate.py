"""Bitrates of discrete streams, measured on the streams themselves.

For a stream of symbols at ``frame_rate`` Hz from a vocabulary of ``K`` symbols, over a set of
utterances (sequences), all rates are total bits over total seconds, with the seconds of a
sequence taken as ``len(sequence) / frame_rate`` (the stream's own time base; so the raw rate
of a stream is exactly the formula):

``raw``
    ``frame_rate x ceil(log2 K)``: fixed-length codes, the rate papers state (HuBERT K=100 at
    50 Hz: 350 bps); the formula is :mod:`resyn_bench.core.bitrate`'s, shared by the reports.
``unigram`` entropy
    the plug-in (maximum-likelihood) entropy of the symbol distribution of the sequences, bits per
    symbol x symbols per second: the best memoryless code for *this* data (a lower bound).
``conditional`` entropy
    ``H(x_t | x_{t-1})`` from the bigram counts within sequences (pairs never cross an utterance
    boundary); each sequence's first symbol costs the unigram entropy.
``run-length`` form
    the sequence as unit-LM pipelines handle it: deduplicated units (consecutive repeats
    collapsed) plus the duration of each run; bits = runs x (unigram entropy of the deduplicated
    units + unigram entropy of the durations). ``dedup`` alone is what a pipeline with a duration
    predictor transmits.
``huffman`` (achieved)
    a canonical Huffman code fitted on a *training* set of sequences and applied to a *test*
    set; the bits counted are the length of the actual encoded bit string (:class:`HuffmanCode`),
    and ``decode(encode(x)) == x``. ``huffman_conditional``: one such code per previous unit
    (:class:`ContextHuffman`), the practical counterpart of the conditional entropy.

**Smoothing and escape rule** (:meth:`HuffmanCode.fit`): every symbol of the declared alphabet
(``0..K-1`` for units; ``1..L`` for run durations, ``L`` = the longest run in training) gets
its training count plus ``alpha`` (default 1, add-one/Laplace smoothing), so a symbol never
seen in training still has a codeword. One extra *escape* symbol (also with weight ``alpha``)
codes anything outside the alphabet (a unit id >= K, a run longer than any seen in training):
the escape codeword is followed by the Elias-gamma code of ``value + 1`` (values >= 0), so
every non-negative integer can be transmitted and the code stays uniquely decodable.
Negative symbols are rejected (ValueError).

The speaker is not a frame-rate stream: it is sent once per utterance (:func:`speaker_rates`)
and reported apart from the per-frame streams.
"""
from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from resyn_bench.core.bitrate import bits_per_symbol, stream_bps

__all__ = ["raw_bps", "bits_per_symbol", "entropy_bits", "unigram_entropy", "conditional_entropy",
           "run_length", "HuffmanCode", "ContextHuffman", "elias_gamma", "StreamRates", "stream_rates",
           "speaker_rates"]


def raw_bps(frame_rate: float, vocab_size: int) -> float:
    """Fixed-length rate: ``frame_rate x ceil(log2 K)`` bits per second (the project's one
    bitrate formula, :func:`resyn_bench.core.bitrate.stream_bps`)."""
    return stream_bps(frame_rate, vocab_size)


def entropy_bits(counts: Iterable[float]) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``counts``."""
    c = np.asarray([x for x in counts if x > 0], dtype=np.float64)
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return max(0.0, float(-(p * np.log2(p)).sum()))   # never -0.0


def _as_arrays(sequences: Iterable[Sequence[int]]) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]


def unigram_entropy(sequences: Iterable[Sequence[int]]) -> float:
    """Plug-in entropy (bits/symbol) of all symbols of ``sequences`` pooled."""
    seqs = _as_arrays(sequences)
    if not seqs or not sum(len(s) for s in seqs):
        return 0.0
    _, counts = np.unique(np.concatenate(seqs), return_counts=True)
    return entropy_bits(counts)


def conditional_entropy(sequences: Iterable[Sequence[int]]) -> float:
    """Plug-in ``H(x_t | x_{t-1})`` (bits/symbol) from bigrams within each sequence:
    ``H(prev, next) - H(prev)`` over the pooled pairs. 0 when there is no pair."""
    seqs = _as_arrays(sequences)
    pairs = [np.stack([s[:-1], s[1:]], axis=1) for s in seqs if len(s) > 1]
    if not pairs:
        return 0.0
    p = np.concatenate(pairs)
    _, joint = np.unique(p, axis=0, return_counts=True)
    _, prev = np.unique(p[:, 0], return_counts=True)
    return max(0.0, entropy_bits(joint) - entropy_bits(prev))


def run_length(sequence: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(units, durations)``: consecutive repeats collapsed, with each run's length."""
    s = np.asarray(sequence, dtype=np.int64).reshape(-1)
    if s.size == 0:
        return s, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    durations = np.diff(np.r_[starts, s.size])
    return s[starts], durations.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Canonical Huffman code
# ---------------------------------------------------------------------------------------------

def elias_gamma(n: int) -> str:
    """Elias-gamma code of ``n >= 1`` as a '0'/'1' string: ``floor(log2 n)`` zeros, then n in
    binary."""
    if n < 1:
        raise ValueError(f"Elias gamma codes integers >= 1, got {n}")
    b = bin(n)[2:]
    return "0" * (len(b) - 1) + b


def _read_elias_gamma(bits: str, pos: int) -> tuple[int, int]:
    zeros = 0
    while pos + zeros < len(bits) and bits[pos + zeros] == "0":
        zeros += 1
    end = pos + 2 * zeros + 1
    if end > len(bits):
        raise ValueError("truncated bit string (inside an escaped value)")
    return int(bits[pos + zeros:end], 2), end


ESCAPE = "ESC"
#: codewords up to this many bits are decoded by one table lookup
PEEK_BITS = 10


def _code_lengths(weights: dict, max_iter: int = 64) -> dict:
    """Huffman code lengths for ``{symbol: weight > 0}`` (ties broken by insertion order, so
    the result is deterministic). A single symbol gets length 1."""
    items = list(weights.items())
    if len(items) == 1:
        return {items[0][0]: 1}
    heap = [(float(w), i, [i]) for i, (_, w) in enumerate(items)]
    heapq.heapify(heap)
    depth = [0] * len(items)
    order = len(items)
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        for i in a + b:
            depth[i] += 1
        heapq.heappush(heap, (w1 + w2, order, a + b))
        order += 1
    return {items[i][0]: depth[i] for i in range(len(items))}


@dataclass
class HuffmanCode:
    """A canonical Huffman code over non-negative integer symbols, with an escape codeword for
    symbols outside its alphabet (see the module notes).

    >>> code = HuffmanCode.fit([[0, 0, 0, 1, 2]], alphabet=range(4))
    >>> code.decode(code.encode([3, 0, 7])) == [3, 0, 7]
    True
    """

    lengths: dict                      # symbol (int or ESCAPE) -> code length in bits
    codewords: dict = field(init=False, repr=False)   # symbol -> '0'/'1' string

    def __post_init__(self):
        # canonical assignment: by (length, symbol), the escape after every integer of its length
        def key(s):
            return (self.lengths[s], 1, 0) if s == ESCAPE else (self.lengths[s], 0, s)

        code, prev_len = 0, None
        self.codewords = {}
        for s in sorted(self.lengths, key=key):
            n = self.lengths[s]
            if prev_len is not None:
                code = (code + 1) << (n - prev_len)
            self.codewords[s] = format(code, f"0{n}b")
            prev_len = n
        self._decode_table = {w: s for s, w in self.codewords.items()}
        self.max_length = max(self.lengths.values())
        self.min_length = min(self.lengths.values())
        # fast path: every codeword of at most PEEK bits, indexed by the next PEEK bits
        self._peek = min(self.max_length, PEEK_BITS)
        self._fast: list = [None] * (1 << self._peek)
        for sym, w in self.codewords.items():
            if len(w) <= self._peek:
                free = self._peek - len(w)
                start = int(w, 2) << free
                entry = (sym, len(w))
                for i in range(start, start + (1 << free)):
                    self._fast[i] = entry

    def _next(self, bits: str, pos: int) -> tuple:
        """(symbol, position after it) of the codeword at ``pos`` (escape not resolved)."""
        chunk = bits[pos:pos + self._peek]
        entry = self._fast[int(chunk.ljust(self._peek, "0"), 2)] if chunk else None
        if entry is not None and entry[1] <= len(chunk):
            return entry[0], pos + entry[1]
        for length in range(max(self.min_length, self._peek + 1) if entry is None
                            else self.min_length, self.max_length + 1):
            sym = self._decode_table.get(bits[pos:pos + length])
            if sym is not None and pos + length <= len(bits):
                return sym, pos + length
        raise ValueError(f"invalid or truncated code at bit {pos}")

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[int]], alphabet: Iterable[int], alpha: float = 1.0,
            escape: bool = True) -> HuffmanCode:
        """Fit on training ``sequences``: weight of each alphabet symbol = its count + ``alpha``;
        the escape symbol (when ``escape``) weighs ``alpha``. With ``alpha=0`` only symbols seen
        in training get codewords (then anything else needs the escape)."""
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        counts = Counter()
        for s in _as_arrays(sequences):
            if s.size and s.min() < 0:
                raise ValueError("Huffman symbols must be non-negative integers")
            counts.update(s.tolist())
        weights: dict = {}
        for a in sorted({int(a) for a in alphabet}):
            if a < 0:
                raise ValueError("alphabet symbols must be non-negative integers")
            w = counts.get(a, 0) + alpha
            if w > 0:
                weights[a] = w
        if escape:
            weights[ESCAPE] = alpha if alpha > 0 else 1e-9
        if not weights:
            raise ValueError("nothing to code: an empty alphabet without an escape symbol")
        return cls(_code_lengths(weights))

    def symbol_bits(self, symbol: int) -> int:
        """Bits this code spends on ``symbol`` (escape + Elias gamma for one outside it)."""
        n = self.lengths.get(int(symbol))
        if n is not None:
            return n
        if ESCAPE not in self.lengths:
            raise ValueError(f"symbol {symbol} is not in the code and the code has no escape")
        if symbol < 0:
            raise ValueError(f"negative symbol {symbol}")
        return self.lengths[ESCAPE] + len(elias_gamma(int(symbol) + 1))

    def count_bits(self, sequence: Sequence[int]) -> int:
        """Length in bits of ``encode(sequence)``, without building the string."""
        s = np.asarray(sequence, dtype=np.int64).reshape(-1)
        if s.size == 0:
            return 0
        values, counts = np.unique(s, return_counts=True)
        return int(sum(self.symbol_bits(int(v)) * int(c) for v, c in zip(values, counts, strict=True)))

    def encode(self, sequence: Sequence[int]) -> str:
        """The code of ``sequence`` as a '0'/'1' string (see :func:`pack` for bytes)."""
        out = []
        cw = self.codewords
        esc = cw.get(ESCAPE)
        for v in np.asarray(sequence, dtype=np.int64).reshape(-1).tolist():
            w = cw.get(v)
            if w is None:
                if esc is None:
                    raise ValueError(f"symbol {v} is not in the code and the code has no escape")
                if v < 0:
                    raise ValueError(f"negative symbol {v}")
                w = esc + elias_gamma(v + 1)
            out.append(w)
        return "".join(out)

    def decode(self, bits: str, n: int | None = None) -> list[int]:
        """Symbols of a '0'/'1' string (all of it, or the first ``n``)."""
        out: list[int] = []
        pos, size = 0, len(bits)
        while pos < size and (n is None or len(out) < n):
            sym, pos = self._next(bits, pos)
            if sym == ESCAPE:
                value, pos = _read_elias_gamma(bits, pos)
                sym = value - 1
            out.append(sym)
        if n is not None and len(out) < n:
            raise ValueError(f"bit string ends after {len(out)} of {n} symbols")
        return out

    def to_dict(self) -> dict:
        return {str(k): v for k, v in self.lengths.items()}


def pack(bits: str) -> bytes:
    """'0'/'1' string -> bytes (zero-padded to a whole byte)."""
    if not bits:
        return b""
    pad = (-len(bits)) % 8
    return int(bits + "0" * pad, 2).to_bytes((len(bits) + pad) // 8, "big")


def unpack(data: bytes, n_bits: int) -> str:
    """bytes -> the first ``n_bits`` of their '0'/'1' string."""
    if not data:
        return ""
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")[:n_bits]


class ContextHuffman:
    """One canonical Huffman code per previous symbol (a first-order code): the practical
    counterpart of ``H(x_t | x_{t-1})``. The first symbol of a sequence, and any symbol after one
    outside the alphabet, use the unigram code.

    Smoothing: in context ``c`` the weight of symbol ``x`` is ``n(c, x) + prior x p(x)``, where
    ``p`` is the add-``alpha`` unigram distribution of the training symbols and ``prior``
    (default 10) the pseudo-count each context borrows from it; every context code has the
    escape codeword of :class:`HuffmanCode` (weight ``alpha``).

    >>> code = ContextHuffman.fit([[0, 1, 0, 1, 2]], range(3))
    >>> code.decode(code.encode([2, 0, 1, 9])) == [2, 0, 1, 9]
    True
    """

    def __init__(self, unigram: HuffmanCode, contexts: dict[int, HuffmanCode]):
        self.unigram = unigram
        self.contexts = contexts

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[int]], alphabet: Iterable[int], alpha: float = 1.0,
            prior: float = 10.0) -> ContextHuffman:
        seqs = _as_arrays(sequences)
        symbols = sorted({int(a) for a in alphabet})
        unigram = HuffmanCode.fit(seqs, symbols, alpha)
        counts = Counter()
        for s in seqs:
            counts.update(s.tolist())
        total = sum(counts.get(a, 0) + alpha for a in symbols) or 1.0
        p = {a: (counts.get(a, 0) + alpha) / total for a in symbols}
        pairs: dict[int, Counter] = {a: Counter() for a in symbols}
        for s in seqs:
            for prev, nxt in zip(s[:-1].tolist(), s[1:].tolist(), strict=True):
                if prev in pairs:
                    pairs[prev][nxt] += 1
        contexts = {}
        for c in symbols:
            weights = {a: pairs[c].get(a, 0) + prior * p[a] for a in symbols}
            weights = {a: w for a, w in weights.items() if w > 0}
            weights[ESCAPE] = alpha if alpha > 0 else 1e-9
            contexts[c] = HuffmanCode(_code_lengths(weights))
        return cls(unigram, contexts)

    def _code(self, prev: int | None) -> HuffmanCode:
        return self.contexts.get(prev, self.unigram) if prev is not None else self.unigram

    def encode(self, sequence: Sequence[int]) -> str:
        out, prev = [], None
        for v in np.asarray(sequence, dtype=np.int64).reshape(-1).tolist():
            code = self._code(prev)
            w = code.codewords.get(v)
            if w is None:
                if v < 0:
                    raise ValueError(f"negative symbol {v}")
                w = code.codewords[ESCAPE] + elias_gamma(v + 1)
            out.append(w)
            prev = v
        return "".join(out)

    def decode(self, bits: str) -> list[int]:
        out: list[int] = []
        pos, prev = 0, None
        while pos < len(bits):
            sym, pos = self._code(prev)._next(bits, pos)
            if sym == ESCAPE:
                value, pos = _read_elias_gamma(bits, pos)
                sym = value - 1
            out.append(sym)
            prev = sym
        return out


# ---------------------------------------------------------------------------------------------
# Rates of one stream
# ---------------------------------------------------------------------------------------------

@dataclass
class StreamRates:
    """Bits per second of one stream, measured several ways (see the module notes)."""

    frame_rate: float
    vocab_size: int
    n_sequences: int                 # evaluated (test) sequences
    n_symbols: int
    seconds: float                   # n_symbols / frame_rate
    raw: float
    unigram: float
    conditional: float
    dedup: float                     # deduplicated units only (unigram entropy)
    durations: float                 # run durations (unigram entropy)
    runs_per_second: float
    huffman: float | None = None     # achieved, code fitted on the training sequences
    huffman_dedup: float | None = None
    huffman_durations: float | None = None
    huffman_conditional: float | None = None   # achieved, one code per previous unit
    n_train_sequences: int = 0
    n_escapes: int = 0               # test symbols the code had to escape (unit ids >= K, long runs)
    round_trip: bool | None = None   # decode(encode(x)) == x checked on every test sequence

    @property
    def run_length(self) -> float:
        return self.dedup + self.durations

    @property
    def huffman_run_length(self) -> float | None:
        if self.huffman_dedup is None or self.huffman_durations is None:
            return None
        return self.huffman_dedup + self.huffman_durations

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["run_length"] = self.run_length
        d["huffman_run_length"] = self.huffman_run_length
        return d


def stream_rates(test: Sequence[Sequence[int]], frame_rate: float, vocab_size: int,
                 train: Sequence[Sequence[int]] | None = None, alpha: float = 1.0,
                 verify: bool = True) -> StreamRates:
    """Measure a stream: entropies of the ``test`` sequences, and (with ``train``) the bits a
    Huffman code fitted on ``train`` achieves on ``test``, both for the symbols (alphabet
    ``0..vocab_size-1``) and for the run-length form (deduplicated units + durations, each with
    its own code; durations over ``1..longest training run``). ``verify`` decodes every encoded
    test sequence and checks it equals the input (``round_trip``)."""
    if frame_rate <= 0:
        raise ValueError(f"frame rate must be > 0, got {frame_rate}")
    test = _as_arrays(test)
    n = sum(len(s) for s in test)
    if n == 0:
        raise ValueError("no symbols to measure (empty sequences)")
    seconds = n / float(frame_rate)
    rl = [run_length(s) for s in test]
    n_runs = sum(len(u) for u, _ in rl)
    h1 = unigram_entropy(test)
    hc = conditional_entropy(test)
    first = sum(1 for s in test if len(s))
    cond_bits = first * h1 + (n - first) * hc
    dedup_bits = n_runs * unigram_entropy([u for u, _ in rl])
    dur_bits = n_runs * unigram_entropy([d for _, d in rl])
    rates = StreamRates(frame_rate=float(frame_rate), vocab_size=int(vocab_size),
                        n_sequences=len(test), n_symbols=n, seconds=seconds,
                        raw=raw_bps(frame_rate, vocab_size), unigram=h1 * n / seconds,
                        conditional=cond_bits / seconds, dedup=dedup_bits / seconds,
                        durations=dur_bits / seconds, runs_per_second=n_runs / seconds)
    if train is None:
        return rates
    train = _as_arrays(train)
    train_rl = [run_length(s) for s in train]
    code = HuffmanCode.fit(train, range(vocab_size), alpha)
    code_u = HuffmanCode.fit([u for u, _ in train_rl], range(vocab_size), alpha)
    longest = max((int(d.max()) for _, d in train_rl if d.size), default=1)
    code_d = HuffmanCode.fit([d for _, d in train_rl], range(1, longest + 1), alpha)
    code_c = ContextHuffman.fit(train, range(vocab_size), alpha)
    bits = bits_u = bits_d = bits_c = 0
    escapes = 0
    ok = True
    for s, (u, d) in zip(test, rl, strict=True):
        enc, enc_u, enc_d = code.encode(s), code_u.encode(u), code_d.encode(d)
        enc_c = code_c.encode(s)
        bits += len(enc)
        bits_u += len(enc_u)
        bits_d += len(enc_d)
        bits_c += len(enc_c)
        escapes += int(((s < 0) | (s >= vocab_size)).sum()) + int((d > longest).sum())
        if verify:
            ok &= (code.decode(enc) == s.tolist() and code_u.decode(enc_u) == u.tolist()
                   and code_d.decode(enc_d) == d.tolist() and code_c.decode(enc_c) == s.tolist())
    rates.huffman = bits / seconds
    rates.huffman_conditional = bits_c / seconds
    rates.huffman_dedup = bits_u / seconds
    rates.huffman_durations = bits_d / seconds
    rates.n_train_sequences = len(train)
    rates.n_escapes = escapes
    rates.round_trip = ok if verify else None
    return rates


def speaker_rates(test_speakers: Sequence[str], seconds: float, n_speakers: int | None = None,
                  train_speakers: Sequence[str] | None = None) -> dict:
    """The speaker stream: one symbol per utterance. ``raw``: ceil(log2 n_speakers) bits per
    utterance; ``entropy``: plug-in entropy of the utterances' speakers; ``huffman``: a code
    fitted on ``train_speakers`` (add-one over the known speakers, escape for new ones) applied to
    the test utterances. Rates are bits over the test streams' ``seconds``."""
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    test_speakers = [str(s) for s in test_speakers]
    known = sorted(set(test_speakers) | set(train_speakers or []))
    k = n_speakers or len(known)
    if k < len(known):
        raise ValueError(f"n_speakers={k} but {len(known)} distinct speakers are in the data")
    n = len(test_speakers)
    out = {"n_utterances": n, "n_speakers": k, "bits_per_utterance_raw": bits_per_symbol(max(k, 1)),
           "raw": n * bits_per_symbol(max(k, 1)) / seconds,
           "entropy": n * entropy_bits(Counter(test_speakers).values()) / seconds,
           "huffman": None}
    if train_speakers is not None:
        index = {s: i for i, s in enumerate(known)}
        code = HuffmanCode.fit([[index[s] for s in train_speakers]], range(k))
        out["huffman"] = code.count_bits([index[s] for s in test_speakers]) / seconds
    return out
