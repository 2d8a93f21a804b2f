import hashlib

import pytest

from pspnet.download import NotFoundError, download
from pspnet.errors import PSPNetError

PAYLOAD = bytes(range(256)) * 400


@pytest.fixture
def site(tmp_path, serve):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(PAYLOAD)
    return serve(folder)


def test_download_writes_the_file_and_checks_sha256(tmp_path, site):
    dest = download(site + "blob.bin", tmp_path / "out" / "blob.bin", hashlib.sha256(PAYLOAD).hexdigest(), False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "out" / "blob.bin.part").exists()


def test_interrupted_download_resumes_from_the_part_file(tmp_path, site):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:1000])
    download(site + "blob.bin", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_sha256_deletes_the_file_and_says_so(tmp_path, site):
    with pytest.raises(PSPNetError, match="expected 00"):
        download(site + "blob.bin", tmp_path / "blob.bin", "00" * 32, progress=False)
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_missing_file_raises_not_found_with_the_url(tmp_path, site):
    with pytest.raises(NotFoundError, match="nothing.bin: not found"):
        download(site + "nothing.bin", tmp_path / "x", progress=False)


def test_unreachable_server_is_a_one_line_error(tmp_path):
    with pytest.raises(PSPNetError, match="cannot download"):
        download("http://127.0.0.1:9/x", tmp_path / "x", progress=False)


def test_processes_asking_for_one_file_at_once_take_turns(tmp_path):
    """Four downloads of one file at once (the processes of a torchrun asking for a published model) from a server
    that sends it slowly: one downloads, the others wait and find it, and every one gets the verified file."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    payload = bytes(range(256)) * 4096  # 1 MiB
    requests = []

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for i in range(0, len(payload), 1 << 16):
                self.wfile.write(payload[i:i + (1 << 16)])
                time.sleep(0.01)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/m.pth"
    digest = hashlib.sha256(payload).hexdigest()[:8]
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(download(url, tmp_path / "m.pth", sha256=digest, progress=False).read_bytes())
        except Exception as e:  # noqa: BLE001 — any failure is the test's finding
            results.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    server.shutdown()
    server.server_close()
    assert results == [payload] * 4 and len(requests) == 1
