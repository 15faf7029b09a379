"""Stream bitrates: raw rates, entropies, run-length form and the canonical Huffman code."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SHARED

from resyn_bench.metrics.bitrate import (
    ESCAPE,
    HuffmanCode,
    bits_per_symbol,
    conditional_entropy,
    elias_gamma,
    entropy_bits,
    pack,
    raw_bps,
    run_length,
    speaker_rates,
    stream_rates,
    unigram_entropy,
    unpack,
)


def test_raw_rates_are_the_papers():
    assert raw_bps(50, 100) == 350.0        # HuBERT K=100
    assert raw_bps(100, 100) == 700.0       # CPC
    assert raw_bps(100, 256) == 800.0       # VQ-VAE
    assert raw_bps(12.5, 20) == 62.5        # F0 codes (the paper states 65)
    assert bits_per_symbol(1) == 0 and bits_per_symbol(2) == 1 and bits_per_symbol(257) == 9
    with pytest.raises(ValueError):
        bits_per_symbol(0)


def test_entropies_known_answers():
    assert entropy_bits([1, 1, 1, 1]) == pytest.approx(2.0)
    assert entropy_bits([5]) == 0.0 and math.copysign(1, entropy_bits([5])) == 1.0  # not -0.0
    cycle = [np.tile(np.arange(8), 50)]
    assert unigram_entropy(cycle) == pytest.approx(3.0)
    assert conditional_entropy(cycle) == pytest.approx(0.0, abs=1e-12)   # next = prev + 1
    rng = np.random.default_rng(0)
    iid = [rng.integers(0, 4, 20000)]
    assert conditional_entropy(iid) == pytest.approx(unigram_entropy(iid), abs=0.01)
    # pairs never cross an utterance boundary: two constant sequences have H(x|prev) = 0
    assert conditional_entropy([[1, 1, 1], [2, 2, 2]]) == pytest.approx(0.0, abs=1e-12)


def test_run_length():
    units, durations = run_length([5, 5, 5, 2, 7, 7])
    assert units.tolist() == [5, 2, 7] and durations.tolist() == [3, 1, 2]
    u, d = run_length([])
    assert u.size == 0 and d.size == 0


def test_huffman_lengths_of_a_dyadic_source_and_canonical_codewords():
    code = HuffmanCode.fit([[0] * 8 + [1] * 4 + [2] * 2 + [3] + [4]], range(5), alpha=0,
                           escape=False)
    assert [code.lengths[s] for s in range(5)] == [1, 2, 3, 4, 4]
    # canonical: codewords of one length are consecutive binary numbers, shorter ones first
    assert [code.codewords[s] for s in range(5)] == ["0", "10", "110", "1110", "1111"]


def _prefix_free(code: HuffmanCode) -> bool:
    words = sorted(code.codewords.values())
    return all(not b.startswith(a) for a, b in zip(words[:-1], words[1:], strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_huffman_round_trip_random(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 300))
    train = [rng.zipf(1.5, int(rng.integers(0, 200))) % k for _ in range(5)]
    code = HuffmanCode.fit(train, range(k), alpha=float(rng.choice([0.0, 0.5, 1.0])))
    assert _prefix_free(code)
    assert sum(2.0 ** -n for n in code.lengths.values()) == pytest.approx(1.0)   # complete code
    for _ in range(5):
        # in-vocabulary symbols, unseen ones, ids >= K and huge ids (escaped)
        x = np.concatenate([rng.integers(0, k, 300), rng.integers(0, 10 * k + 5, 20),
                            [10 ** 9, k, 0]])
        rng.shuffle(x)
        bits = code.encode(x)
        assert len(bits) == code.count_bits(x)
        assert code.decode(bits) == x.tolist()
        assert code.decode(unpack(pack(bits), len(bits))) == x.tolist()
    assert code.decode(code.encode([])) == []


def test_huffman_single_symbol_and_errors():
    code = HuffmanCode.fit([[3, 3, 3]], [3], alpha=0, escape=False)
    assert code.encode([3, 3]) == "00" and code.decode("00") == [3, 3]
    with pytest.raises(ValueError, match="no escape"):
        code.encode([4])
    with pytest.raises(ValueError, match="negative"):
        HuffmanCode.fit([[1]], range(4)).encode([-1])
    with pytest.raises(ValueError):
        HuffmanCode.fit([[-2]], range(4))
    full = HuffmanCode.fit([[0, 1, 2, 3]], range(4), alpha=0)
    bits = full.encode([7])
    assert bits.startswith(full.codewords[ESCAPE]) and bits.endswith(elias_gamma(8))
    with pytest.raises(ValueError, match="truncated"):
        full.decode(bits[:-1])
    with pytest.raises(ValueError, match="ends after"):
        full.decode(full.encode([1]), n=2)


def test_huffman_on_its_training_data_is_within_one_bit_of_the_entropy():
    rng = np.random.default_rng(1)
    x = rng.choice(10, size=50000, p=np.r_[0.5, np.full(9, 0.5 / 9)])
    code = HuffmanCode.fit([x], range(10), alpha=0, escape=False)
    per_symbol = code.count_bits(x) / len(x)
    h = unigram_entropy([x])
    assert h <= per_symbol < h + 1


def test_elias_gamma():
    assert elias_gamma(1) == "1" and elias_gamma(2) == "010" and elias_gamma(5) == "00101"
    with pytest.raises(ValueError):
        elias_gamma(0)


def test_stream_rates_known_answers():
    # four units (never the same twice in a row, about uniform), each held exactly 2 frames:
    # dedup ~2 bits/run, durations 0 bits
    rng = np.random.default_rng(3)
    seqs = [np.repeat(np.cumsum(rng.integers(1, 4, 500)) % 4, 2) for _ in range(4)]
    r = stream_rates(seqs[2:], frame_rate=50, vocab_size=4, train=seqs[:2])
    assert r.raw == 100.0 and r.seconds == pytest.approx(2000 / 50)
    assert r.runs_per_second == pytest.approx(25.0)
    assert r.dedup == pytest.approx(2.0 * 25, rel=0.02)
    assert r.durations == pytest.approx(0.0, abs=1e-9)
    assert r.unigram == pytest.approx(100.0, rel=0.01)
    assert r.round_trip is True and r.n_escapes == 0
    # durations code over {1, 2} + escape: the frequent "2" costs 1 bit per run
    assert r.huffman_durations == pytest.approx(25.0)
    # 4 near-equiprobable symbols + the escape codeword: lengths 2, 2, 2, 3 (+ escape 3)
    assert r.huffman == pytest.approx(50 * 2.25, rel=0.02)
    with pytest.raises(ValueError):
        stream_rates([[]], 50, 4)


def test_speaker_rates():
    out = speaker_rates(["a", "b", "a", "b"], seconds=8.0, train_speakers=["a", "b"])
    assert out["bits_per_utterance_raw"] == 1 and out["raw"] == pytest.approx(0.5)
    assert out["entropy"] == pytest.approx(0.5)
    assert out["huffman"] is not None and out["huffman"] >= out["entropy"]
    with pytest.raises(ValueError):
        speaker_rates(["a", "b", "c"], 1.0, n_speakers=2)


def test_huffman_round_trip_on_the_papers_streams():
    from resyn_bench.unit_files import read_unit_file

    path = SHARED / "units" / "LJSpeech" / "hubert100" / "test.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    seqs = [e.units for e in read_unit_file(path)]
    code = HuffmanCode.fit(seqs[::2], range(100))
    for s in seqs[1::2][:120]:
        assert code.decode(code.encode(s)) == s.tolist()


@pytest.mark.parametrize("seed", range(3))
def test_context_huffman_round_trip_and_gain(seed):
    from resyn_bench.metrics.bitrate import ContextHuffman

    rng = np.random.default_rng(seed)
    k = 20
    # a first-order source: the next unit is prev + 1 or prev + 2 (mod k)
    def chain(n):
        x = [int(rng.integers(0, k))]
        for _ in range(n - 1):
            x.append((x[-1] + int(rng.integers(1, 3))) % k)
        return np.array(x)
    train, test = [chain(2000) for _ in range(3)], [chain(500) for _ in range(3)]
    code = ContextHuffman.fit(train, range(k))
    for s in test + [np.array([3, 99, 4, 4, 0]), np.array([], dtype=int)]:
        assert code.decode(code.encode(s)) == s.tolist()
    bits = sum(len(code.encode(s)) for s in test) / sum(len(s) for s in test)
    assert bits < 1.6      # ~1 bit/unit (two choices), far below log2(20) = 4.3 of a memoryless code
    r = stream_rates(test, 10, k, train=train)
    assert r.round_trip and r.huffman_conditional < 0.5 * r.huffman
    assert r.huffman_conditional >= r.conditional * 0.95
