"""Checkpoint catalogue: names and paths, actionable errors, and downloads that never leave a
partial or mismatching file (file:// URLs and a local HTTP server; never the internet)."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from resyn_bench import catalogue
from resyn_bench.catalogue import CatalogueEntry, CatalogueError

PAYLOAD = bytes(range(256)) * 3000          # 768000 bytes: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    ranges: list[int] = []  # first bytes of the Range requests /flaky.bin answered

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path == "/file.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/nolength.bin":
            # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif self.path == "/flaky.bin" and self.headers.get("Range"):
            first = int(self.headers["Range"].split("=")[1].split("-")[0])
            _Handler.ranges.append(first)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            self.send_header("Content-Length", str(len(PAYLOAD) - first))
            self.end_headers()
            self.wfile.write(PAYLOAD[first:])
        elif self.path in ("/truncated.bin", "/flaky.bin"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True  # the server goes away mid-transfer
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # random free port
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _entry(monkeypatch, url: str, sha256: str | None = PAYLOAD_SHA, name: str = "test-file",
           **kw) -> CatalogueEntry:
    entry = CatalogueEntry(name=name, url=url, sha256=sha256, relpath=f"test/{name}.bin",
                           description="a test file", **kw)
    monkeypatch.setitem(catalogue.CATALOGUE, name, entry)
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------ table

def test_paths_live_under_home_checkpoints(home):
    path = catalogue.catalogue_path("hubert-l6-km100")
    assert path == home / "checkpoints" / "gslm" / "hubert" / "km100" / "km.bin"
    assert catalogue.catalogue_path("hubert-base-ls960") == \
        home / "checkpoints" / "hubert" / "hubert_base_ls960.pt"
    assert not catalogue.is_present("hubert-l6-km100")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert catalogue.is_present("hubert-l6-km100")


def test_names_aliases_and_unknown():
    assert catalogue.resolve_name("hubert-km100") == "hubert-l6-km100"
    assert catalogue.resolve_name("HuBERT-Base") == "hubert-base-ls960"
    with pytest.raises(CatalogueError, match="Did you mean 'hubert-l6-km100'"):
        catalogue.resolve_name("hubert-l6-km10O")
    expected = {"hubert-base-ls960", "cpc-big-ll6kh", "vocoder-hubert100-lj",
                "vocoder-hubert100-lj-config",
                *(f"hubert-l6-km{k}" for k in (50, 100, 200, 500)),
                *(f"cpc-km{k}" for k in (50, 100, 200, 500)),
                *(f"logmel-km{k}" for k in (50, 100, 200)),
                # public unit vocoders (textlesslib Expresso, fairseq textless S2ST)
                "hubert-l9-km500", "mhubert-base-vp-en-es-fr", "mhubert-l11-km1000",
                *(f"vocoder-expresso-hubert-l9-km500{s}" for s in ("", "-config", "-speakers",
                                                                   "-styles")),
                *(f"vocoder-mhubert1000-{lang}{s}" for lang in ("en-lj", "es-css10", "fr-css10")
                  for s in ("", "-config"))}
    assert expected <= set(catalogue.CATALOGUE)  # metric models add their own entries
    for e in catalogue.CATALOGUE.values():
        if e.url.startswith("https://drive.google.com/"):  # wavlm-large-sv: Drive id URL
            continue
        assert e.url.startswith(("https://dl.fbaipublicfiles.com/", "https://huggingface.co/",
                                 "https://github.com/"))
        assert e.url.endswith(e.relpath.split("/")[-1])


def test_only_documented_hashes_are_recorded():
    hashed = {n: e.sha256 for n, e in catalogue.CATALOGUE.items()
              if e.sha256 and not n.startswith("whisper-")}
    assert hashed == {
        "hubert-base-ls960": "1703cf8d2cdc76f8c046f5f6a9bcd224e0e6caf4744cad1a1f4199c32cac8c8d",
        "hubert-l6-km100": "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe",
        "cpc-km100": "077b96e010b1e87be627ef2bef0f5e5cdaa1c01722aa363b2dc0bb6a638e8b26",
        # textlesslib's checkpoint manager (textless/checkpoint_manager/__init__.py)
        "cpc-big-ll6kh": "73155dad5d7c986fe7b7f548050060a8e9cc9a0ffd111a22932f38c3e617c5b8",
        "hubert-l6-km50": "d01a7d5bc2c54b7b5f25f321ba525b4d230b06e3927f90bad0394198bc89f494",
        "hubert-l6-km200": "b3c46c9cdd1707ad852dd53c359aa73942e79d53c432a9a8a419ed046408024b",
        "hubert-l6-km500": "411c8668e1314751404f58636f935fc73540a6793890435da4a8ffadf157398e",
        "cpc-km50": "c48be5717aebc08169aa5165d58267449b8c8568624a346bb9f4b26eac3b0240",
        "cpc-km200": "2d863d1c6f251d19e667998248c87642ecb5e3ffaa410e9ebfa64341db4f6de2",
        "cpc-km500": "35398f665dff06801a7bf1e595bc176711ed751d554e64d999dc42f1dd106561",
        "hubert-l9-km500": "4450dcbc90aa7d0553306a4b0fafef35c9b3c840468f02969273dfbb9db89a23",
        "mhubert-base-vp-en-es-fr":
            "23527cd6311a6617bfa199f574e2eed478cd6a58a634f4007165c10ec0019832",
        "mhubert-l11-km1000": "c70f5416c38044d0c20e33fdeedf4533974a8ac4029985cdef3b755038381a0b",
        "vocoder-expresso-hubert-l9-km500":
            "d50f4704e961c29cb386924ef32cd0c3a4d1089a3f9be856f8a3b6dcfdd6147a",
        "vocoder-expresso-hubert-l9-km500-config":
            "31e65ef5e100cb43de08f2c8d225496ace1ed87a49fcb8ee44bd6805f079b1f0",
        "vocoder-expresso-hubert-l9-km500-speakers":
            "2efabb7a4ad786da34fe6fbe99c3906b7abd40b2e01c81b7efde76142ae3d552",
        "vocoder-expresso-hubert-l9-km500-styles":
            "a6f63206518448277c63c3a251ac13484784829cf2e1b0a23b0860dd32543520"}


def test_missing_file_error_is_actionable(home):
    err = catalogue.missing_file_error("hubert-l6-km100", what="unit encoder 'x'")
    msg = str(err)
    assert "https://dl.fbaipublicfiles.com/textless_nlp/gslm/hubert/km100/km.bin" in msg
    assert "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe" in msg
    assert str(home / "checkpoints" / "gslm" / "hubert" / "km100" / "km.bin") in msg
    assert "resyn-bench fetch hubert-l6-km100" in msg
    # no documented hash: says so and how to trust the file
    msg = str(catalogue.missing_file_error("logmel-km200"))
    assert "no sha256 is documented" in msg and "--trust-sha256" in msg


# ---------------------------------------------------------------------------------- fetch

def test_fetch_file_url_success(home, tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    _entry(monkeypatch, src.as_uri())
    path = catalogue.fetch("test-file", progress=False)
    assert path == home / "checkpoints" / "test" / "test-file.bin"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == ["test-file.bin"]  # no temp file, no sidecar
    ok, digest = catalogue.verify("test-file")
    assert ok is True and digest == PAYLOAD_SHA
    # present and correct: kept, not downloaded again (the source may be gone)
    src.unlink()
    assert catalogue.fetch("test-file", progress=False) == path


def test_fetch_hash_mismatch_leaves_nothing(home, tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD[:-1] + b"\x00")
    _entry(monkeypatch, src.as_uri())
    with pytest.raises(CatalogueError) as info:
        catalogue.fetch("test-file", progress=False)
    msg = str(info.value)
    assert PAYLOAD_SHA in msg and src.as_uri() in msg
    assert str(catalogue.catalogue_path("test-file")) in msg
    assert hashlib.sha256(src.read_bytes()).hexdigest() in msg  # what we got
    assert _leftovers(home / "checkpoints" / "test") == []


def test_fetch_url_override_same_check(home, tmp_path, monkeypatch):
    good = tmp_path / "mirror.bin"
    good.write_bytes(PAYLOAD)
    _entry(monkeypatch, "https://example.invalid/never-used.bin")
    path = catalogue.fetch("test-file", progress=False, url_override=good.as_uri())
    assert path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("route,total_shown", [("/file.bin", True), ("/nolength.bin", False)])
def test_fetch_http_with_and_without_length(home, monkeypatch, capsys, server, route,
                                            total_shown):
    _entry(monkeypatch, server + route)
    path = catalogue.fetch("test-file", progress=True)
    assert path.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "test-file" in err                      # the bar is labelled with the name
    assert ("100%" in err) == total_shown          # a percentage only when the size is known
    assert "750k" in err                           # bytes received (768000 B = 750 KiB)


def test_fetch_http_404(home, monkeypatch, server):
    _entry(monkeypatch, server + "/nothing-here.bin")
    with pytest.raises(CatalogueError) as info:
        catalogue.fetch("test-file", progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and server + "/nothing-here.bin" in msg
    assert PAYLOAD_SHA in msg and str(catalogue.catalogue_path("test-file")) in msg
    assert _leftovers(home / "checkpoints" / "test") == []


@pytest.mark.parametrize("sha256", [PAYLOAD_SHA, None])
def test_fetch_interrupted_transfer_keeps_only_the_part(home, monkeypatch, server, sha256):
    # without a documented hash only the Content-Length check can catch the cut
    _entry(monkeypatch, server + "/truncated.bin", sha256=sha256)
    with pytest.raises(CatalogueError, match="cut off") as info:
        catalogue.fetch("test-file", progress=False)
    assert "run the same command again to resume" in str(info.value)
    # no file under the final name (nothing mistakes the cut file for the checkpoint); the
    # bytes received wait for the next fetch
    assert not catalogue.is_present("test-file")
    assert _leftovers(home / "checkpoints" / "test") == ["test-file.bin.part",
                                                        "test-file.bin.part.json"]
    part = home / "checkpoints" / "test" / "test-file.bin.part"
    assert part.read_bytes() == PAYLOAD[:len(PAYLOAD) // 3]


def test_fetch_resumes_an_interrupted_transfer_with_a_range_request(home, monkeypatch, server):
    _entry(monkeypatch, server + "/flaky.bin")
    _Handler.ranges.clear()
    with pytest.raises(CatalogueError, match="cut off"):
        catalogue.fetch("test-file", progress=False)
    path = catalogue.fetch("test-file", progress=False)
    assert _Handler.ranges == [len(PAYLOAD) // 3]  # asked only for the missing bytes
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == ["test-file.bin"]


def test_fetch_offline(home, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _entry(monkeypatch, f"http://127.0.0.1:{port}/file.bin")
    with pytest.raises(CatalogueError) as info:
        catalogue.fetch("test-file", progress=False)
    msg = str(info.value)
    assert "offline" in msg and f"127.0.0.1:{port}" in msg
    assert str(catalogue.catalogue_path("test-file")) in msg and PAYLOAD_SHA in msg
    assert _leftovers(home / "checkpoints" / "test") == []


def test_fetch_keyboard_interrupt_leaves_no_file_and_resumes(home, monkeypatch, server):
    _entry(monkeypatch, server + "/file.bin")

    class Interrupting:
        def __init__(self, *a, **k):
            self.n = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.n += n
            if self.n > 200_000:  # mid-transfer, after a partial file was written
                raise KeyboardInterrupt

    from resyn_bench import downloads

    real_bar = downloads._progress_bar
    monkeypatch.setattr(downloads, "_progress_bar", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        catalogue.fetch("test-file", progress=True)
    # never a file under the final name; the part is kept for the next fetch, which completes
    assert not catalogue.is_present("test-file")
    assert "test-file.bin.part" in _leftovers(home / "checkpoints" / "test")
    monkeypatch.setattr(downloads, "_progress_bar", real_bar)
    assert catalogue.fetch("test-file", progress=False).read_bytes() == PAYLOAD


def test_fetch_without_documented_hash_records_but_does_not_trust(home, tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    _entry(monkeypatch, src.as_uri(), sha256=None)
    path = catalogue.fetch("test-file", progress=False)
    assert _leftovers(path.parent) == ["test-file.bin", "test-file.bin.sha256"]
    assert (path.parent / "test-file.bin.sha256").read_text() == f"{PAYLOAD_SHA}  test-file.bin\n"
    assert catalogue.recorded_sha256("test-file") == PAYLOAD_SHA
    assert catalogue.trusted_hashes("test-file") == ()          # not trusted by itself
    assert catalogue.trusted_hashes("test-file", [PAYLOAD_SHA.upper()]) == (PAYLOAD_SHA,)
    assert catalogue.verify("test-file") == (None, PAYLOAD_SHA)


def test_existing_mismatching_file_is_reported_not_replaced(home, tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    _entry(monkeypatch, src.as_uri())
    path = catalogue.catalogue_path("test-file")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"something else")
    with pytest.raises(CatalogueError, match="Delete it"):
        catalogue.fetch("test-file", progress=False)
    assert path.read_bytes() == b"something else"
    assert catalogue.fetch("test-file", progress=False, force=True).read_bytes() == PAYLOAD


def test_fetch_brings_required_files(home, tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    gen = tmp_path / "g.bin"
    gen.write_bytes(PAYLOAD)
    _entry(monkeypatch, cfg.as_uri(), sha256=None, name="test-config")
    _entry(monkeypatch, gen.as_uri(), name="test-gen", requires=("test-config",))
    catalogue.fetch("test-gen", progress=False)
    assert catalogue.is_present("test-config") and catalogue.is_present("test-gen")


# -------------------------------------------------------------------------------- the CLI

def _fetch_args(*argv):
    from resyn_bench.cli.fetch import configure_parser as configure_fetch_parser

    p = argparse.ArgumentParser()
    configure_fetch_parser(p)
    return p.parse_args(list(argv))


def test_cli_fetch_list_and_download(home, tmp_path, monkeypatch, capsys):
    from resyn_bench.cli.fetch import run as run_fetch

    assert run_fetch(_fetch_args("--list")) == 0
    out = capsys.readouterr().out
    assert "hubert-l6-km100" in out and str(home / "checkpoints") in out
    assert "documented" in out and " no " in out

    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    _entry(monkeypatch, src.as_uri())
    assert run_fetch(_fetch_args("test-file", "--quiet")) == 0
    assert "downloaded" in capsys.readouterr().out
    assert run_fetch(_fetch_args("--list", "--verify", "--json")) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["test-file"]["present"] and rows["test-file"]["verified"] is True

    _entry(monkeypatch, src.as_uri() + ".missing", name="test-gone")
    assert run_fetch(_fetch_args("test-gone", "--quiet")) == 1
    assert "by hand" in capsys.readouterr().err
    assert run_fetch(_fetch_args("no-such-model")) == 2


def test_list_shows_a_kmeans_left_only_as_its_converted_npz(home):
    from resyn_bench import catalogue
    from resyn_bench.cli.fetch import _list_table

    npz = catalogue.catalogue_path("hubert-l6-km100").with_suffix(".npz")
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"stand-in")
    rows = {r["name"]: r for r in catalogue.list_entries()}
    assert rows["hubert-l6-km100"]["present"] is False and rows["hubert-l6-km100"]["converted"]
    assert not rows["hubert-l6-km50"]["converted"]
    line = next(ln for ln in _list_table(list(rows.values())).splitlines()
                if ln.startswith("hubert-l6-km100 "))
    assert " converted " in line
