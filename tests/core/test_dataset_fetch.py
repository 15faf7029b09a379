"""Test-set catalogue and `resyn-bench fetch` of test sets: resumable downloads (HTTP Range on a
local server, never the internet), hash and size checks, safe extraction, the CLI."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import soundfile as sf

from resyn_bench import catalogue, downloads
from resyn_bench.catalogue import CatalogueError, DatasetArchive


def _librispeech_tar() -> bytes:
    """A LibriSpeech-layout .tar.gz: one utterance with its transcript, plus 400 kB of noise
    so a download spans many reads."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        flac = io.BytesIO()
        t = np.arange(16000) / 16000
        sf.write(flac, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000,
                 format="FLAC", subtype="PCM_16")
        add("LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac", flac.getvalue())
        add("LibriSpeech/test-clean/1089/134686/1089-134686.trans.txt",
            b"1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n")
        add("LibriSpeech/README.TXT", np.random.default_rng(0).bytes(400_000))
    return buf.getvalue()


PAYLOAD = _librispeech_tar()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """What the handler serves and what it saw."""

    def __init__(self):
        self.payload = PAYLOAD
        self.etag = '"v1"'
        self.cut_after: int | None = None    # send only this many bytes, then drop the line
        self.honour_range = True
        self.requests: list[dict] = []


STATE = _Server()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        st = STATE
        st.requests.append({"path": self.path, "range": self.headers.get("Range"),
                            "if_range": self.headers.get("If-Range")})
        if self.path not in ("/test-clean.tar.gz", "/other.tar.gz"):
            self.send_error(404, "Not Found")
            return
        data, start = st.payload, 0
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        partial = (rng and st.honour_range and rng.startswith("bytes=")
                   and (if_range is None or if_range == st.etag))
        if partial:
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", st.etag)
        self.end_headers()
        if st.cut_after is not None:
            self.wfile.write(body[:st.cut_after])
            self.wfile.flush()
            self.close_connection = True
            st.cut_after = None      # the next request succeeds
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_state():
    global STATE
    STATE = _Server()
    yield


def _entry(monkeypatch, url: str, sha256: str | None = PAYLOAD_SHA, size: int | None = None,
           **kw) -> DatasetArchive:
    fields = dict(name="test-set", url=url, sha256=sha256, size=size, folder="test-set",
                  data_root="LibriSpeech/test-clean", marker="1089", loader="librispeech",
                  description="a test set", licence="CC BY 4.0", hash_source="computed here")
    fields.update(kw)
    entry = DatasetArchive(**fields)
    monkeypatch.setitem(catalogue.DATASET_ARCHIVES, entry.name, entry)
    return entry


# ------------------------------------------------------------------------------- catalogue

def test_catalogue_entries_are_documented(home):
    names = set(catalogue.DATASET_ARCHIVES)
    assert names == {"ljspeech-1.1", "vctk-0.92", "librispeech-test-clean"}
    e = catalogue.DATASET_ARCHIVES
    # hashes as stated by torchaudio's dataset classes (see hash_source); never invented
    assert e["ljspeech-1.1"].sha256 == \
        "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
    assert e["vctk-0.92"].sha256 == \
        "f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c"
    assert e["librispeech-test-clean"].sha256 == \
        "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23"
    for entry in e.values():
        assert entry.url.startswith("https://") and entry.hash_source and entry.licence
        assert entry.loader in ("ljspeech", "vctk", "librispeech")
    assert catalogue.dataset_archive_name("LJSpeech") == "ljspeech-1.1"
    assert catalogue.dataset_archive_name("test-clean") == "librispeech-test-clean"
    assert catalogue.dataset_archive_name("hubert-l6-km100") is None
    assert catalogue.dataset_data_root("vctk") == home / "datasets" / "vctk-0.92"
    assert catalogue.dataset_data_root("librispeech-test-clean") == \
        home / "datasets" / "librispeech-test-clean" / "LibriSpeech" / "test-clean"


# ---------------------------------------------------------------------- resumable download

def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "test-clean.tar.gz"
    STATE.cut_after = 150_000
    with pytest.raises(CatalogueError, match="stopped at 150000 of .* run the same command "
                                             "again to resume"):
        downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256=PAYLOAD_SHA,
                                     progress=False)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 150_000 and not dest.exists()
    meta = json.loads(dest.with_name(dest.name + ".part.json").read_text())
    assert meta["etag"] == '"v1"'
    # the second call asks only for the rest, and the result is byte-identical
    assert downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256=PAYLOAD_SHA,
                                        progress=False) == dest
    assert STATE.requests[-1]["range"] == "bytes=150000-"
    assert STATE.requests[-1]["if_range"] == '"v1"'
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test-clean.tar.gz"]


def test_server_without_range_support_restarts(server, tmp_path):
    dest = tmp_path / "test-clean.tar.gz"
    STATE.cut_after = 100_000
    with pytest.raises(CatalogueError):
        downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, progress=False)
    STATE.honour_range = False      # answers 200 with the whole file
    downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256=PAYLOAD_SHA,
                                 progress=False)
    assert STATE.requests[-1]["range"] == "bytes=100000-"
    assert dest.read_bytes() == PAYLOAD


def test_changed_upstream_file_is_not_spliced(server, tmp_path):
    dest = tmp_path / "test-clean.tar.gz"
    STATE.cut_after = 100_000
    with pytest.raises(CatalogueError):
        downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, progress=False)
    # the file changed upstream: If-Range no longer matches, the server sends it whole
    new = PAYLOAD[::-1]
    STATE.payload, STATE.etag = new, '"v2"'
    downloads.download_resumable(f"{server}/test-clean.tar.gz", dest,
                                 sha256=hashlib.sha256(new).hexdigest(), progress=False)
    assert dest.read_bytes() == new


def test_complete_part_and_hash_mismatch(server, tmp_path):
    dest = tmp_path / "test-clean.tar.gz"
    part = dest.with_name(dest.name + ".part")
    # a part that already holds every byte: the server answers 416, nothing more is sent
    part.write_bytes(PAYLOAD)
    dest.with_name(dest.name + ".part.json").write_text(
        json.dumps({"url": f"{server}/test-clean.tar.gz", "etag": '"v1"'}))
    downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256=PAYLOAD_SHA,
                                 size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    dest.unlink()
    # a wrong hash: both hashes named, nothing kept (resuming cannot repair it)
    with pytest.raises(CatalogueError) as info:
        downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256="0" * 64,
                                     progress=False)
    assert PAYLOAD_SHA in str(info.value) and "0" * 64 in str(info.value)
    assert list(tmp_path.iterdir()) == []
    # a documented size that differs from the server's: refused before any byte is written
    with pytest.raises(CatalogueError, match="catalogue says 123"):
        downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, size=123,
                                     progress=False)
    assert not dest.exists()
    # a part of another URL is never continued
    part.write_bytes(b"x" * 10)
    dest.with_name(dest.name + ".part.json").write_text(json.dumps({"url": "http://elsewhere"}))
    downloads.download_resumable(f"{server}/test-clean.tar.gz", dest, sha256=PAYLOAD_SHA,
                                 progress=False)
    assert STATE.requests[-1]["range"] is None and dest.read_bytes() == PAYLOAD


# ------------------------------------------------------------------------- fetch + extract

def test_fetch_extracts_and_the_loader_reads_it(server, home, monkeypatch):
    from resyn_bench.datasets import load_dataset

    _entry(monkeypatch, f"{server}/test-clean.tar.gz")
    STATE.cut_after = 200_000
    with pytest.raises(CatalogueError, match="resume"):
        downloads.fetch_dataset("test-set", progress=False)
    assert not downloads.is_fetched("test-set")
    root = downloads.fetch_dataset("test-set", progress=False)
    assert STATE.requests[-1]["range"] == "bytes=200000-"
    assert root == home / "datasets" / "test-set" / "LibriSpeech" / "test-clean"
    assert downloads.is_fetched("test-set")
    record = json.loads((home / "datasets" / "test-set" / downloads.COMPLETE).read_text())
    assert record["sha256"] == PAYLOAD_SHA and record["members"] == 3
    ds = load_dataset("librispeech", root)
    assert [u.utt_id for u in ds] == ["1089-134686-0000"]
    assert ds.utterances[0].text == "HE HOPED THERE WOULD BE STEW FOR DINNER"
    # the archive is gone after extraction, no temporary folder is left
    assert sorted(p.name for p in (home / "datasets").iterdir()) == [".downloads", "test-set"]
    assert list((home / "datasets" / ".downloads").iterdir()) == []
    # present: kept, nothing downloaded
    n = len(STATE.requests)
    assert downloads.fetch_dataset("test-set", progress=False) == root
    assert len(STATE.requests) == n


def test_unsafe_archives_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(CatalogueError, match="unsafe member path '../outside.txt'"):
        downloads.extract(evil, tmp_path / "out", progress=False)
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("a/escape")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(CatalogueError, match="unsafe"):
        downloads.extract(link, tmp_path / "out", progress=False)
    # a zip (VCTK's format) extracts; a damaged archive says what to do
    good = tmp_path / "v.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("wav48_silence_trimmed/p225/p225_001_mic1.flac", b"data")
        zf.writestr("txt/p225/p225_001.txt", "Please call Stella.\n")
    out = downloads.extract(good, tmp_path / "vctk", progress=False)
    assert (out / "txt" / "p225" / "p225_001.txt").read_text() == "Please call Stella.\n"
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not an archive at all")
    with pytest.raises(CatalogueError, match="not a readable tar or zip archive"):
        downloads.extract(bad, tmp_path / "bad", progress=False)


def _fetch_args(*argv: str) -> argparse.Namespace:
    from resyn_bench.cli.fetch import configure_parser as configure_fetch_parser

    p = argparse.ArgumentParser()
    configure_fetch_parser(p)
    return p.parse_args(list(argv))


def test_cli_fetch_and_list(server, home, monkeypatch, capsys):
    from resyn_bench.cli.fetch import run as run_fetch

    _entry(monkeypatch, f"{server}/missing.tar.gz")
    assert run_fetch(_fetch_args("--list")) == 0
    out = capsys.readouterr().out
    assert "librispeech-test-clean" in out and "--dataset ljspeech --data-root" in out
    # the catalogue URL is gone: the error names it; --url takes a mirror
    assert run_fetch(_fetch_args("test-set", "--quiet")) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert run_fetch(_fetch_args("test-set", "--quiet", "--keep-archive",
                                 "--url", f"{server}/test-clean.tar.gz")) == 0
    out = capsys.readouterr().out
    root = home / "datasets" / "test-set" / "LibriSpeech" / "test-clean"
    assert f"--dataset librispeech --data-root {root}" in out and "sha256 ok" in out
    assert (home / "datasets" / ".downloads" / "missing.tar.gz").is_file()   # the entry's name
    assert run_fetch(_fetch_args("--list", "--json")) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["test-set"]["present"] is True and rows["test-set"]["kind"] == "test set"
    assert "hubert-base-ls960" in rows      # checkpoints listed as before
    assert run_fetch(_fetch_args("test-set", "hubert-base-ls960")) == 2
    assert "separate commands" in capsys.readouterr().err
