"""``outputs:DIR --conversions LIST``: another tool's voice conversions evaluated as built-in
ones are (ids ``SOURCE__to_TARGET``, records with ``target_speaker``), with known answers from
the synthetic voices and test speaker backend of test_disentangle: "conversions" that are the
target speaker's own recordings have full target accuracy and no source leakage; copies of the
source have full leakage and target accuracy 0."""
from __future__ import annotations

import json
import shutil

import pytest
from test_disentangle import CORPUS, N_UTT, corpus, fakes  # noqa: F401  (fixtures)

from resyn_bench.conversions import ConversionListError, read_rows
from resyn_bench.runner import RunConfig, RunError, run
from resyn_bench.store import read_records


def _run(corpus, out, listing):  # noqa: F811 (fixtures)
    return run(RunConfig(system=f"outputs:{listing.parent / 'conv'}", dataset="manifest",
                         data_root=str(corpus), out=str(out), metrics="spk", experiment="vc",
                         metric_options={"spk": {"backend": "test-spectrum", "folds": 3}},
                         system_options={"conversions": str(listing)}), progress=False)


def _mean(recs, key):
    vals = [r["metrics"][key] for r in recs if r.get("status") == "ok" and key in r.get("metrics", {})]
    assert vals, key
    return sum(vals) / len(vals)


def _records(out):
    recs = read_records(out, ["spk"])
    return {r["utt_id"]: r for r in recs}


def test_target_recordings_and_source_copies_known_answers(corpus, tmp_path, home, fakes):  # noqa: F811 (fixtures)
    wavs = CORPUS["root"] / "wavs"
    for name, of_target in (("own", True), ("copy", False)):
        base = tmp_path / name
        conv = base / "conv"
        (conv / "sub").mkdir(parents=True)
        lines = ["output\tsource\ttarget"]
        for src_spk, tgt_spk in (("spkA", "spkB"), ("spkB", "spkC"), ("spkC", "spkA")):
            for j in range(N_UTT):
                made = f"{tgt_spk if of_target else src_spk}_{j}.wav"
                shutil.copy(wavs / made, conv / "sub" / f"{src_spk}{j}-{tgt_spk}.ogg.wav")
                lines.append(f"sub/{src_spk}{j}-{tgt_spk}.ogg.wav\t{src_spk}_{j}\t{tgt_spk}")
        if of_target:   # rows that fail with their reason; the others go on
            (conv / "broken.wav").write_bytes(b"RIFF not audio")
            lines += ["absent.wav\tspkA_0\tspkC", "x.wav\tnobody_7\tspkB",
                      "sub/spkA0-spkB.ogg.wav\tspkA_1\tspkZ", "broken\tspkB_0\tspkA"]
        listing = base / "pairs.tsv"
        listing.write_text("\n".join(lines) + "\n")
        _run(corpus, base / "run", listing)
        recs = _records(base / "run")
        ok = [r for r in recs.values() if r.get("status") == "ok"]
        assert len(ok) == 3 * N_UTT
        for r in ok:
            source, _, target = r["utt_id"].partition("__to_")
            assert r["target_speaker"] == target and r["speaker"] == source.split("_")[0]
        if of_target:
            assert _mean(ok, "spk.acc") == 1.0 and _mean(ok, "spk.source_acc") == 0.0
            why = {uid: recs[uid]["reason"] for uid in ("spkA_0__to_spkC", "nobody_7__to_spkB",
                                                        "spkA_1__to_spkZ", "spkB_0__to_spkA")}
            assert all(recs[u]["status"] == "failed" for u in why)
            assert "no output file" in why["spkA_0__to_spkC"]
            assert "unknown source utterance 'nobody_7'" in why["nobody_7__to_spkB"]
            assert "'spkZ' has no audio" in why["spkA_1__to_spkZ"]
            assert "broken.wav" in why["spkB_0__to_spkA"]
        else:
            assert _mean(ok, "spk.acc") == 0.0 and _mean(ok, "spk.source_acc") == 1.0
    manifest = json.loads((tmp_path / "own" / "run" / "manifest.json").read_text())
    assert manifest["system"]["conversions"] == str((tmp_path / "own" / "pairs.tsv").resolve())


def test_duplicate_rows_and_bad_lists_stop_before_any_work(corpus, tmp_path, home, fakes):  # noqa: F811 (fixtures)
    (tmp_path / "conv").mkdir()
    listing = tmp_path / "pairs.csv"
    listing.write_text("output,source,target\na.wav,spkA_0,spkB\nb.wav,spkA_1,spkB\n"
                       "c.wav,spkA_0,spkB\n")
    with pytest.raises(RunError, match=r"line 4 repeats the conversion of 'spkA_0' to 'spkB' "
                                       r"of line 2"):
        _run(corpus, tmp_path / "run", listing)
    assert not (tmp_path / "run").exists()
    listing.write_text("file,source,target\na.wav,spkA_0,spkB\n")
    with pytest.raises(ConversionListError, match="lacks the column.*output"):
        read_rows(listing)
    jl = tmp_path / "pairs.jsonl"
    jl.write_text('{"output": "a.wav", "source": "spkA_0", "target": "spkB", '
                  '"target_ref": ["r1.wav", "r2.wav"]}\n\n')
    rows = read_rows(jl)
    assert rows == [{"output": "a.wav", "source": "spkA_0", "target": "spkB",
                     "target_ref": "r1.wav;r2.wav", "_line": "1"}]
    (tmp_path / "p.xlsx").write_text("x")
    with pytest.raises(ConversionListError, match="unknown format"):
        read_rows(tmp_path / "p.xlsx")


def test_cli_run_with_conversions_then_disentangle_runs(corpus, tmp_path, home, fakes, capsys):  # noqa: F811 (fixtures)
    """The command a user types, and the disentanglement summary of that run folder."""
    from resyn_bench.cli import main

    wavs = CORPUS["root"] / "wavs"
    conv = tmp_path / "theirs"
    conv.mkdir()
    rows = [{"output": f"A{j}", "source": f"spkA_{j}", "target": "spkC"} for j in range(N_UTT)]
    rows += [{"output": f"B{j}.wav", "source": f"spkB_{j}", "target": "spkA"} for j in range(N_UTT)]
    for r in rows:   # the target speaker's own recordings; "A<j>" rows give an id, found as A<j>.wav
        src = wavs / f"{r['target']}_{r['source'][-1]}.wav"
        shutil.copy(src, conv / (r["output"] + ".wav" if "." not in r["output"] else r["output"]))
    listing = tmp_path / "pairs.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    argv = ["run", "--system", f"outputs:{conv}", "--conversions", str(listing), "--dataset",
            "manifest", "--data-root", str(corpus), "--out", str(out), "--metrics", "spk",
            "-m", "spk.backend=test-spectrum", "-m", "spk.folds=3", "--quiet", "--label", "theirs",
            "--no-isolation"]   # the test backend lives in this process only
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["experiment"] == "vc"
    assert sorted(_records(out)) == sorted(f"{r['source']}__to_{r['target']}" for r in rows)
    assert main(["disentangle", "--runs", str(out), "--report", str(tmp_path / "rep"),
                 "--n-boot", "200", "--no-plots"]) == 0
    summary = json.loads((tmp_path / "rep" / "disentangle.json").read_text())
    figs = {f["key"]: f for f in summary[0]["figures"]}
    assert summary[0]["label"] == "theirs"
    assert figs["spk.acc"]["value"] == 1.0 and figs["spk.source_acc"]["value"] == 0.0
    with pytest.raises(SystemExit, match="--conversions applies only to outputs:DIR"):
        main([*argv[:2], "world", *argv[3:]])


def test_targets_outside_the_dataset_enrolled_from_target_ref(corpus, tmp_path, home, fakes,  # noqa: F811 (fixtures)
                                                              caplog):
    """Conversions into a voice that is in no dataset (register 3.0, "spkD"): enrolled from the
    rows' target_ref recordings (1 s each: a warning under 10 s); a missing reference fails
    its row only."""
    import logging

    import soundfile as sf
    from test_disentangle import SR, voice

    refs = tmp_path / "refs"
    refs.mkdir()
    for k in range(2):
        sf.write(refs / f"d{k}.wav", voice(k, 3.0, seed=50 + k), SR, subtype="PCM_16")
    conv = tmp_path / "conv"
    conv.mkdir()
    lines = ["output\tsource\ttarget\ttarget_ref"]
    for j in range(N_UTT):
        sf.write(conv / f"A{j}.wav", voice(j, 3.0, seed=60 + j), SR, subtype="PCM_16")
        ref = "refs/d0.wav;refs/d1.wav" if j == 0 else "refs/d1.wav"
        lines.append(f"A{j}.wav\tspkA_{j}\tspkD\t{ref}")
    lines.append("A0.wav\tspkB_0\tspkE\trefs/absent.wav")
    listing = tmp_path / "pairs.tsv"
    listing.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO, logger="resyn_bench.runner"):
        _run(corpus, tmp_path / "run", listing)
    assert "target spkD: 2.0 s of reference audio in 2 recording(s), under 10 s" in caplog.text
    recs = _records(tmp_path / "run")
    bad = recs["spkB_0__to_spkE"]
    assert bad["status"] == "failed" and "absent.wav: no such file" in bad["reason"]
    ok = [r for r in recs.values() if r.get("status") == "ok"]
    assert len(ok) == N_UTT
    assert _mean(ok, "spk.acc") == 1.0 and _mean(ok, "spk.source_acc") == 0.0
    assert all(r["metrics"].get("spk.acc") is not None for r in ok)


def _voices_list(tmp_path, edit_rows=True, bad_edit=False):
    """Another tool's folder and list: resynthesis rows (target = the source's own speaker,
    output = a re-recording of the source, 1000 bytes transmitted each), vc rows (the target's own
    recordings) and F0-edit rows (the source's contour shifted by +3 semitones, f0_edit shift:+3)."""
    import soundfile as sf
    from test_disentangle import REGISTERS, SR, voice

    conv = tmp_path / "theirs"
    conv.mkdir()
    lines = ["output\tsource\ttarget\tf0_edit\tbytes"]
    for si, (spk, reg) in enumerate(REGISTERS.items()):
        for j in range(N_UTT):
            seed = 10 * si + j
            sf.write(conv / f"{spk}_{j}-resyn.wav", voice(j, reg, seed=seed), SR, subtype="PCM_16")
            lines.append(f"{spk}_{j}-resyn.wav\t{spk}_{j}\t{spk}\t\t1000")
            other = sorted(REGISTERS)[(si + 1) % 3]
            sf.write(conv / f"{spk}_{j}-to-{other}.wav", voice(j, REGISTERS[other], seed=seed), SR,
                     subtype="PCM_16")
            edit = "shift:x" if bad_edit and (si, j) == (0, 0) else ""
            lines.append(f"{spk}_{j}-to-{other}.wav\t{spk}_{j}\t{other}\t{edit}\t")
            if edit_rows:
                sf.write(conv / f"{spk}_{j}-up3.wav", voice(j, reg, shift=3.0, seed=seed), SR,
                         subtype="PCM_16")
                lines.append(f"{spk}_{j}-up3.wav\t{spk}_{j}\t{spk}\tshift:+3\t")
    listing = tmp_path / "pairs.tsv"
    listing.write_text("\n".join(lines) + "\n")
    return conv, listing


def test_disentangle_reads_a_conversion_list_split_by_experiment(corpus, tmp_path, home, fakes,  # noqa: F811 (fixtures)
                                                                  capsys):
    """One list with resynthesis, vc and shift:+3 rows: `disentangle --conversions` runs each
    experiment on its rows; the summary measures the achieved shift against the requested one
    (the outputs are shifted by exactly +3 semitones), the vc rows' target similarity (the
    targets' own recordings) and the resynthesis rows' measured bitrate (8000 bits per second
    of 1 s audio)."""
    from resyn_bench.cli import main

    conv, listing = _voices_list(tmp_path, bad_edit=True)
    out = tmp_path / "disent"
    argv = ["disentangle", "--system", f"outputs:{conv}", "--conversions", str(listing),
            "--label", "theirs", "--dataset", "manifest", "--data-root", str(corpus), "--out",
            str(out), "--metrics", "spk,f0", "--f0-preset", "dio", "-m", "spk.backend=test-spectrum",
            "-m", "spk.folds=3", "--n-boot", "200", "--quiet", "--no-plots"]
    assert main(argv) == 0
    runs = sorted(p.parent.name for p in (out / "theirs").glob("*/manifest.json"))
    assert runs == ["f0_shift", "resynthesis", "vc"]
    for exp in runs:
        manifest = json.loads((out / "theirs" / exp / "manifest.json").read_text())
        assert manifest["config"]["experiment"] == exp
    shift = read_records(out / "theirs" / "f0_shift", ["f0"])
    assert len(shift) == 3 * N_UTT and {r["f0_edit"] for r in shift} == {"shift:+3"}
    assert all(r["status"] == "ok" for r in shift)
    vc = _records(out / "theirs" / "vc")
    assert vc["spkA_0__to_spkB"]["status"] == "failed"      # its f0_edit cannot be read
    assert "f0_edit" in vc["spkA_0__to_spkB"]["reason"] and "shift:x" in vc["spkA_0__to_spkB"]["reason"]
    resyn = _records(out / "theirs" / "resynthesis")
    assert all(r["bitstream"]["bits"] == 8000 and r["bitstream"]["source"] == "measured"
               for r in resyn.values())
    figs = {f["key"]: f for f in json.loads((out / "summary" / "disentangle.json").read_text())[0]["figures"]}
    assert figs["f0.shift_achieved"]["value"] == pytest.approx(3.0, abs=0.3)
    assert figs["f0.shift_achieved"]["note"] == "requested shift:+3"
    assert figs["spk.acc"]["value"] == 1.0 and figs["spk.source_acc"]["value"] == 0.0
    # the same command again resumes: nothing re-evaluated, the split lists unchanged
    before = {p: p.stat().st_mtime_ns for p in (out / "theirs" / "lists").iterdir()}
    assert main(argv) == 0
    assert "0 evaluated" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "theirs" / "lists").iterdir()} == before


def test_a_run_holds_one_experiment_of_a_conversion_list(corpus, tmp_path, home, fakes):  # noqa: F811 (fixtures)
    """`run --conversions` of a list mixing edited and unedited rows stops before any work and
    points to `disentangle --conversions`; a list of edits only is an f0_<kind> run, and calling
    it vc is refused; a bad bytes value fails its row."""
    from resyn_bench.cli import main
    from resyn_bench.conversions import list_experiment

    conv, listing = _voices_list(tmp_path)
    with pytest.raises(RunError, match="different F0 edits.*disentangle --conversions"):
        _run(corpus, tmp_path / "mixed", listing)
    assert not (tmp_path / "mixed" / "records.jsonl").exists()
    rows = listing.read_text().splitlines()
    only = tmp_path / "shift.tsv"
    only.write_text("\n".join([rows[0], *[r for r in rows if "shift:+3" in r]]) + "\n")
    assert list_experiment(only) == "f0_shift"
    with pytest.raises(RunError, match="make a f0_shift run.*--experiment f0_shift"):
        _run(corpus, tmp_path / "wrong", only)
    sized = tmp_path / "sized.tsv"
    resyn_rows = [r for r in rows if "-resyn" in r]
    sized.write_text("\n".join([rows[0], resyn_rows[0].replace("\t1000", "\t-5"), *resyn_rows[1:]]) + "\n")
    argv = ["run", "--system", f"outputs:{conv}", "--conversions", str(sized), "--dataset",
            "manifest", "--data-root", str(corpus), "--out", str(tmp_path / "sized"), "--metrics",
            "spk", "-m", "spk.backend=test-spectrum", "-m", "spk.folds=3", "--quiet",
            "--no-isolation", "--max-failed", "0.5"]
    assert main(argv) == 0
    recs = _records(tmp_path / "sized")
    assert recs["spkA_0__to_spkA"]["status"] == "failed"
    assert "bytes '-5'" in recs["spkA_0__to_spkA"]["reason"]
    assert recs["spkA_1__to_spkA"]["bitstream"]["bits"] == 8000
