"""Bootstrap CIs, paired tests and multiple-comparison correction (resyn_bench.reports.stats)."""
from __future__ import annotations

import numpy as np
import pytest

from resyn_bench.metrics.f0 import F0Metrics
from resyn_bench.reports.stats import (
    CI,
    PairedResult,
    bootstrap_ci,
    bootstrap_ci_counts,
    bootstrap_ci_mean,
    bootstrap_weights,
    count_matrix,
    group_pool_fn,
    group_statistic,
    hierarchical_bootstrap_indices,
    holm,
    iter_bootstrap_indices,
    paired_bootstrap,
    paired_bootstrap_counts,
    paired_permutation_test,
    significant,
)


def mean_of(entries):
    vals = [e["values"]["x"] for e in entries if e["values"].get("x") is not None]
    return sum(vals) / len(vals) if vals else None


def make_entries(values, speakers, prefix="u"):
    return [{"utt_id": f"{prefix}{i:04d}", "speaker": s, "values": {"x": v}, "counts": {},
             "extra": {}} for i, (v, s) in enumerate(zip(values, speakers, strict=True))]


# --------------------------------------------------------------------------------------------
# Resampling indices
# --------------------------------------------------------------------------------------------

def test_indices_structure_speakers_then_utterances():
    speakers = ["a"] * 5 + ["b"] * 2 + ["c"] * 1 + ["d"] * 3
    sizes = {"a": 5, "b": 2, "c": 1, "d": 3}
    reps = hierarchical_bootstrap_indices(speakers, 300, seed=3)
    assert len(reps) == 300
    seen_twice = 0
    for idx in reps:
        assert idx.dtype.kind == "i" and idx.min() >= 0 and idx.max() < len(speakers)
        # each drawn speaker contributes exactly its own size, so per-speaker counts are
        # multiples of the speaker's size and the multiples sum to the number of speakers
        per = {s: sum(1 for i in idx if speakers[i] == s) for s in sizes}
        mult = {s: per[s] / sizes[s] for s in sizes}
        assert all(m == int(m) for m in mult.values())
        assert sum(mult.values()) == len(sizes)
        assert len(idx) == sum(per.values())
        if mult["a"] >= 2:
            seen_twice += 1
    assert seen_twice > 0      # the talkative speaker does get drawn twice sometimes


def test_speaker_drawn_twice_gets_independent_utterance_resamples():
    # speaker "a" (2 utts) and "b" (1 utt): whenever "a" is drawn twice, its 4 utterance draws
    # are two independent resamples, so patterns like 3 x utt0 + 1 x utt1 occur (a single
    # resample duplicated would only give even counts)
    speakers = ["a", "a", "b"]
    odd = 0
    for idx in hierarchical_bootstrap_indices(speakers, 400, seed=0):
        if len(idx) == 4:                      # "a" drawn twice
            odd += np.count_nonzero(idx == 0) % 2
    assert odd > 0


def test_single_speaker_degenerates_to_utterance_bootstrap():
    reps = hierarchical_bootstrap_indices(["s"] * 7, 2000, seed=1)
    assert all(len(r) == 7 for r in reps)
    counts = np.stack([np.bincount(r, minlength=7) for r in reps])
    # multiplicities ~ Multinomial(7, 1/7): mean 1, variance 6/7
    assert np.allclose(counts.mean(axis=0), 1.0, atol=0.1)
    assert np.allclose(counts.var(axis=0), 6 / 7, atol=0.15)


def test_indices_reproducible_and_seed_dependent():
    spk = [f"s{i % 5}" for i in range(40)]
    a = hierarchical_bootstrap_indices(spk, 50, seed=7)
    b = list(iter_bootstrap_indices(spk, 50, seed=7))
    c = hierarchical_bootstrap_indices(spk, 50, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_weights_match_indices():
    spk = ["a"] * 10 + ["b"] * 3 + [None, None] + ["c"] * 6
    idx = hierarchical_bootstrap_indices(spk, 150, seed=11)    # crosses a block boundary
    w = np.concatenate(list(bootstrap_weights(spk, 150, seed=11)))
    assert w.shape == (150, len(spk))
    for r, i in enumerate(idx):
        assert np.array_equal(w[r], np.bincount(i, minlength=len(spk)))


def test_none_speaker_is_a_singleton():
    # two unknown-speaker utterances are two speakers, not one pooled "None" speaker
    spk = [None, None]
    lengths = {len(i) for i in hierarchical_bootstrap_indices(spk, 200, seed=0)}
    assert lengths == {2}
    both_same = sum(int(i[0] == i[1]) for i in hierarchical_bootstrap_indices(spk, 200, seed=0))
    assert 50 < both_same < 150


# --------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------

def test_ci_reproducible_and_seed_sensitive():
    rng = np.random.default_rng(0)
    values = rng.normal(size=60)
    entries = make_entries(values, [f"s{i % 6}" for i in range(60)])
    a = bootstrap_ci(entries, mean_of, n_boot=500, seed=5)
    b = bootstrap_ci(entries, mean_of, n_boot=500, seed=5)
    c = bootstrap_ci(entries, mean_of, n_boot=500, seed=6)
    assert isinstance(a, CI)
    assert a == b and np.array_equal(a.replicates, b.replicates)
    assert a.estimate == c.estimate
    assert (a.low, a.high) != (c.low, c.high)
    width = a.high - a.low
    assert abs(a.low - c.low) < 0.25 * width and abs(a.high - c.high) < 0.25 * width
    assert a.low < a.estimate < a.high
    assert a.n_boot == a.n_valid == 500 and a.level == 0.95
    assert a.method == "percentile, speakers then utterances"


def test_ci_coverage_iid_normal():
    rng = np.random.default_rng(2024)
    true_mean, n = 3.0, 40
    designs = {"utterance": [str(i) for i in range(n)],          # every utterance a speaker
               "speakers": [str(i // 2) for i in range(n)]}      # 20 speakers x 2 utterances
    for name, spk in designs.items():
        hits = 0
        for k in range(200):
            x = rng.normal(true_mean, 2.0, size=n)
            ci = bootstrap_ci_mean(x, spk, n_boot=1000, seed=k)
            hits += ci.low <= true_mean <= ci.high
        assert 0.88 <= hits / 200 <= 0.99, (name, hits / 200)


def test_talkative_speaker_does_not_dominate():
    # one speaker with 100 utterances of value 1, nine speakers with 2 utterances of value 0
    values = [1.0] * 100 + [0.0] * 18
    speakers = ["talker"] * 100 + [f"q{i // 2}" for i in range(18)]
    n_boot = 2000
    hier = bootstrap_ci_mean(values, speakers, n_boot=n_boot, seed=0)
    assert hier.estimate == pytest.approx(100 / 118)

    # plain utterance bootstrap, computed independently here
    rng = np.random.default_rng(0)
    v = np.asarray(values)
    plain_reps = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    plain_low, plain_high = np.quantile(plain_reps, [0.025, 0.975])

    # the utterance bootstrap treats 118 independent draws: narrow, around 0.85
    assert plain_high - plain_low < 0.2
    assert plain_reps.min() > 0.6
    # speakers first: the talker is 1 of 10 speaker draws, absent from ~(9/10)^10 = 35 % of
    # replicates, which then have mean 0 -> the interval spans almost the whole [0, 1]
    assert hier.high - hier.low > 4 * (plain_high - plain_low)
    assert hier.low == 0.0
    share_zero = np.mean(hier.replicates == 0.0)
    assert 0.28 < share_zero < 0.42
    # and the generic path with the same seed agrees with the fast mean path
    entries = make_entries(values, speakers)
    generic = bootstrap_ci(entries, mean_of, n_boot=n_boot, seed=0)
    assert np.allclose(generic.replicates, hier.replicates, rtol=0, atol=1e-12)


def test_count_fast_path_equals_generic_ratio():
    rng = np.random.default_rng(3)
    n = 80
    speakers = [f"s{i % 9}" for i in range(n)]
    frames = rng.integers(0, 50, size=n)                      # some utterances have 0 frames
    frames[:3] = 0
    errors = rng.binomial(frames, 0.3)
    entries = [{"utt_id": f"u{i}", "speaker": speakers[i], "values": {},
                "counts": {"n_err": int(errors[i]), "n": int(frames[i])}, "extra": {}}
               for i in range(n)]

    def ratio(es):
        tot = sum(e["counts"]["n"] for e in es)
        return sum(e["counts"]["n_err"] for e in es) / tot if tot else None

    generic = bootstrap_ci(entries, ratio, n_boot=400, seed=9)
    mat = np.column_stack([errors, frames])
    fast = bootstrap_ci_counts(mat, lambda c: c[0] / c[1] if c[1] > 0 else None, speakers,
                               n_boot=400, seed=9)
    assert np.array_equal(generic.replicates, fast.replicates)     # integer counts: exact
    assert generic == fast


def test_count_fast_path_none_replicates_dropped():
    # speaker "empty" has no frames: replicates drawing only it are undefined and dropped
    mat = np.array([[1, 2], [0, 0]], dtype=float)
    ci = bootstrap_ci_counts(mat, lambda c: c[0] / c[1] if c[1] > 0 else None, ["full", "empty"],
                             n_boot=400, seed=0)
    assert 0 < 400 - ci.n_valid < 200            # P(only "empty" drawn twice) = 1/4
    assert ci.low == ci.high == ci.estimate == 0.5


def test_count_fast_path_with_f0_group():
    group = F0Metrics(preset="dio")
    rng = np.random.default_rng(5)
    entries = []
    for i in range(60):
        nf = int(rng.integers(50, 300))
        nvb = int(rng.integers(0, nf))
        entries.append({"utt_id": f"u{i}", "speaker": f"s{i % 7}", "values": {},
                        "counts": {"n_frames": nf, "n_voiced_both": nvb,
                                   "n_gross": int(rng.integers(0, nvb + 1)),
                                   "n_voicing_err": int(rng.integers(0, nf - nvb + 1))},
                        "extra": {}})
    generic = bootstrap_ci(entries, group_statistic(group, "f0.gpe"), n_boot=200, seed=1)
    mat, keys = count_matrix(entries)
    fast = bootstrap_ci_counts(mat, group_pool_fn(group, keys, "f0.gpe"),
                               [e["speaker"] for e in entries], n_boot=200, seed=1)
    assert generic.estimate == pytest.approx(group.aggregate(entries)["f0.gpe"])
    assert np.array_equal(generic.replicates, fast.replicates)


def test_count_fast_path_1000_utts_1000_replicates():
    rng = np.random.default_rng(0)
    n = 1000
    frames = rng.integers(100, 1000, size=n)
    mat = np.column_stack([rng.binomial(frames, 0.1), frames]).astype(float)
    speakers = [f"s{i % 40}" for i in range(n)]
    ci = bootstrap_ci_counts(mat, lambda c: c[0] / c[1], speakers, n_boot=1000, seed=0)
    assert ci.n_valid == 1000 and ci.replicates.shape == (1000,)
    assert ci.low < ci.estimate < ci.high
    assert 0.09 < ci.estimate < 0.11 and ci.high - ci.low < 0.02


def test_mean_ignores_undefined_values():
    values = [1.0, None, 3.0, float("nan"), 5.0]
    ci = bootstrap_ci_mean(values, ["a", "a", "b", "b", "c"], n_boot=300, seed=0)
    assert ci.estimate == 3.0
    assert 1.0 <= ci.low <= ci.high <= 5.0


# --------------------------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paired_data():
    rng = np.random.default_rng(42)
    n = 60
    speakers = [f"s{i % 8}" for i in range(n)]
    base = rng.normal(5.0, 1.0, size=n)
    shifted = base + 1.0 + rng.normal(0.0, 0.1, size=n)
    return speakers, base, shifted


def test_paired_identical_systems(paired_data):
    speakers, base, _ = paired_data
    a = make_entries(base, speakers)
    res = paired_bootstrap(a, [dict(e) for e in a], mean_of, n_boot=500, seed=0)
    assert isinstance(res, PairedResult)
    assert res.delta == 0.0 and res.low == 0.0 and res.high == 0.0
    assert res.p_value == 1.0 and res.n_common == len(a)
    assert not significant(res)
    perm = paired_permutation_test(base, base, n_perm=2000, seed=0)
    assert perm.p_value == 1.0 and perm.delta == 0.0
    assert not significant(perm)


def test_paired_constant_shift(paired_data):
    speakers, base, shifted = paired_data
    res = paired_bootstrap(make_entries(base, speakers), make_entries(shifted, speakers),
                           mean_of, n_boot=1000, seed=0)
    assert res.delta == pytest.approx(np.mean(shifted - base))
    assert res.estimate_b - res.estimate_a == pytest.approx(res.delta)
    assert 0 < res.low < res.delta < res.high
    assert res.p_value < 0.01 and significant(res, alpha=0.01)
    perm = paired_permutation_test(base, shifted, n_perm=5000, seed=0)
    assert perm.delta == pytest.approx(res.delta)
    assert perm.p_value == pytest.approx(1 / 5001)      # no sign pattern beats the observed
    assert significant(perm, alpha=0.01)
    # the reverse direction: negative delta, same evidence
    rev = paired_bootstrap(make_entries(shifted, speakers), make_entries(base, speakers),
                           mean_of, n_boot=1000, seed=0)
    assert rev.delta == pytest.approx(-res.delta) and rev.high < 0 and rev.p_value < 0.01


def test_paired_noise_only_is_not_significant():
    rng = np.random.default_rng(8)
    n = 80
    a = rng.normal(size=n)
    b = a + rng.normal(0.0, 0.5, size=n)
    b = b - (b - a).mean()                                 # zero observed mean difference
    spk = [f"s{i % 10}" for i in range(n)]
    res = paired_bootstrap(make_entries(a, spk), make_entries(b, spk), mean_of, n_boot=500)
    perm = paired_permutation_test(a, b, n_perm=2000)
    assert res.low < 0 < res.high and res.p_value > 0.5
    assert perm.p_value > 0.5


def test_paired_matches_by_utt_id_and_reports_common(paired_data):
    speakers, base, shifted = paired_data
    a = make_entries(base, speakers)
    b = make_entries(shifted, speakers)
    # drop 5 utterances from a, 3 others from b, and shuffle b's order
    a_kept = [e for i, e in enumerate(a) if i not in {0, 1, 2, 3, 4}]
    b_kept = [e for i, e in enumerate(b) if i not in {10, 11, 12}][::-1]
    res = paired_bootstrap(a_kept, b_kept, mean_of, n_boot=300, seed=0)
    assert res.n_common == len(base) - 8
    assert (res.n_only_a, res.n_only_b) == (3, 5)
    keep = [i for i in range(len(base)) if i not in {0, 1, 2, 3, 4, 10, 11, 12}]
    assert res.delta == pytest.approx(np.mean(shifted[keep]) - np.mean(base[keep]))
    # same result whatever the input order
    again = paired_bootstrap(a_kept[::-1], b_kept[::-1], mean_of, n_boot=300, seed=0)
    assert np.array_equal(res.replicates, again.replicates)


def test_paired_same_indices_for_both_systems():
    # b = a + 1 exactly: if the two systems were resampled independently, replicate deltas would
    # scatter; with shared indices every replicate delta is exactly the observed delta
    a = np.arange(30, dtype=float)
    spk = [f"s{i % 5}" for i in range(30)]
    res = paired_bootstrap(make_entries(a, spk), make_entries(a + 1.0, spk), mean_of,
                           n_boot=200, seed=0)
    assert np.allclose(res.replicates, 1.0, atol=1e-12) and res.p_value == 0.0


def test_paired_counts_fast_path_matches_generic(paired_data):
    speakers, base, shifted = paired_data
    ia = np.round(base * 10).astype(int)
    ib = np.round(shifted * 10).astype(int)
    generic = paired_bootstrap(make_entries(ia, speakers), make_entries(ib, speakers), mean_of,
                               n_boot=300, seed=4)
    ones = np.ones(len(ia))
    fast = paired_bootstrap_counts(np.column_stack([ia, ones]), np.column_stack([ib, ones]),
                                   lambda c: c[0] / c[1], speakers, n_boot=300, seed=4)
    assert np.allclose(generic.replicates, fast.replicates, rtol=0, atol=1e-9)
    assert generic.p_value == fast.p_value and generic.n_common == fast.n_common


def test_permutation_drops_undefined_pairs():
    res = paired_permutation_test([1.0, None, 2.0, 3.0], [2.0, 5.0, float("nan"), 4.0],
                                  n_perm=999, seed=0)
    assert res.n == 2 and res.delta == 1.0
    # 2 pairs, both +1: exactly 2 of the 4 sign patterns reach |T| = 2 -> p ~ (1 + 999/2) / 1000
    assert 0.4 < res.p_value < 0.6


# --------------------------------------------------------------------------------------------
# Holm
# --------------------------------------------------------------------------------------------

def test_holm_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])           # clipped at 1
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


# --------------------------------------------------------------------------------------------
# Metric-group corpus numbers: the three replicate paths agree, the hook is taken generically
# --------------------------------------------------------------------------------------------

class _RatioGroup:
    """A count-pooled ratio whose ``aggregate`` is custom (so the generic path runs), with an
    optional vectorised ``replicates`` hook that counts its calls."""

    def __init__(self, hook: bool):
        self.hook_calls = 0
        if not hook:
            self.replicates = lambda entries, blocks: None

    def pool(self, counts):
        n = counts.get("n", 0.0)
        return {"g.rate": counts.get("err", 0.0) / n if n else None}

    def aggregate(self, entries):
        err = sum(e["counts"]["err"] for e in entries)
        n = sum(e["counts"]["n"] for e in entries)
        return {"g.rate": err / n if n else None}

    def replicates(self, entries, weight_blocks):
        self.hook_calls += 1
        m = np.array([[e["counts"]["err"], e["counts"]["n"]] for e in entries], dtype=float)
        return [self.pool({"err": s[0], "n": s[1]}) for w in weight_blocks for s in w @ m]


def _ratio_entries(n=40, seed=5, prefix="u"):
    rng = np.random.default_rng(seed)
    return [{"utt_id": f"{prefix}{i:03d}", "speaker": f"s{i % 6}", "values": {},
             "counts": {"err": float(rng.integers(0, 5)), "n": float(rng.integers(5, 12))},
             "extra": {}} for i in range(n)]


def test_group_hook_is_used_and_equals_generic_path():
    from resyn_bench.reports.stats import compare_corpus, corpus_replicates, group_cis

    entries = _ratio_entries()
    fast, slow = _RatioGroup(hook=True), _RatioGroup(hook=False)
    r_fast = corpus_replicates(fast, entries, n_boot=150, seed=2)
    r_slow = corpus_replicates(slow, entries, n_boot=150, seed=2)
    assert fast.hook_calls == 1 and len(r_fast) == len(r_slow) == 150
    assert np.allclose([r["g.rate"] for r in r_fast], [r["g.rate"] for r in r_slow], atol=1e-12)
    corpus = fast.aggregate(entries)
    ci_fast, _ = group_cis(fast, entries, ["g.rate"], corpus, n_boot=150, seed=2)
    ci_slow, _ = group_cis(slow, entries, ["g.rate"], corpus, n_boot=150, seed=2)
    assert ci_fast["g.rate"].low == pytest.approx(ci_slow["g.rate"].low, abs=1e-12)
    assert ci_fast["g.rate"].high == pytest.approx(ci_slow["g.rate"].high, abs=1e-12)
    # paired, several keys at once: hook on both sides == per-key generic paired bootstrap
    other = _ratio_entries(seed=9)
    res = compare_corpus(fast, entries, other, ["g.rate"], n_boot=150, seed=2)["g.rate"]
    ref = paired_bootstrap(entries, other, lambda es: slow.aggregate(es)["g.rate"],
                           speaker_of=lambda e: e["speaker"], n_boot=150, seed=2)
    assert fast.hook_calls == 4          # 1 + group_cis 1 + one per side
    assert res.delta == pytest.approx(ref.delta) and res.p_value == pytest.approx(ref.p_value)
    assert res.low == pytest.approx(ref.low, abs=1e-12) and res.n_common == ref.n_common


def test_default_metric_group_has_no_replicates_hook_and_counts_path_matches_pool():
    from resyn_bench.reports.stats import corpus_replicates, uses_count_path

    group = F0Metrics(preset="dio")
    assert group.replicates(_ratio_entries(), iter([])) is None
    assert uses_count_path(group) and not uses_count_path(_RatioGroup(hook=True))
    counts = {"n_frames": 100.0, "n_ref_voiced": 60.0, "n_syn_voiced": 55.0,
              "n_voiced_both": 50.0, "n_gross": 3.0}
    entries = [{"utt_id": f"u{i}", "speaker": f"s{i % 3}", "values": {},
                "counts": {**counts, "n_voicing_err": float(i % 4)}, "extra": {}}
               for i in range(12)]
    reps = corpus_replicates(group, entries, n_boot=20, seed=1)
    w = next(iter(bootstrap_weights([e["speaker"] for e in entries], 20, 1)))[0]
    first = group.pool({k: float(w @ [e["counts"][k] for e in entries])
                        for k in entries[0]["counts"]})
    assert reps[0] == first and first["f0.vde"] is not None
