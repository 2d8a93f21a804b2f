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
