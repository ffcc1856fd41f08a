"""Missing, directory, empty, unreadable, special files: clear errors naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from metaextract_dask import EmptyFileError, FileAccessError, MetaExtractError, extract_file


def _expect(path, exc_type, words, **kw):
    with pytest.raises(exc_type) as info:
        extract_file(path, **kw)
    message = str(info.value)
    assert os.fspath(path) in message and words in message
    return info.value


@pytest.mark.unit
def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.h5", FileAccessError, "no such file")


@pytest.mark.unit
def test_directory(tmp_path):
    d = tmp_path / "looks_like.nc"
    d.mkdir()
    _expect(d, FileAccessError, "not a regular file: it is a directory")


@pytest.mark.unit
def test_empty_file(tmp_path):
    p = tmp_path / "empty.bin"
    p.touch()
    _expect(p, EmptyFileError, "empty file")


@pytest.mark.unit
def test_fifo_is_refused_without_blocking(tmp_path):
    p = tmp_path / "pipe.bin"
    os.mkfifo(p)
    _expect(p, FileAccessError, "FIFO")  # would hang forever if opened


@pytest.mark.unit
def test_device_file():
    _expect("/dev/zero", FileAccessError, "character device")


@pytest.mark.unit
def test_broken_symlink_and_loop(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    _expect(tmp_path / "dangling", FileAccessError, "broken symbolic link")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    _expect(tmp_path / "a", FileAccessError, "symbolic link loop")


@pytest.mark.integration
def test_errors_on_a_cluster_are_ours_not_dask_tracebacks(tmp_path, process_client):
    p = tmp_path / "empty.bin"
    p.touch()
    err = _expect(p, EmptyFileError, "empty", client=process_client)
    assert isinstance(err, MetaExtractError)


UNREADABLE = """
import sys
from metaextract_dask import extract_file, FileAccessError
try:
    extract_file(sys.argv[1])
except FileAccessError as exc:
    print("ERROR", exc)
"""


@pytest.mark.integration
def test_unreadable_file_even_for_root():
    # root reads anything, so run the extraction with the capabilities that let
    # root bypass file permissions dropped (setpriv is in util-linux)
    d = tempfile.mkdtemp()
    os.chmod(d, 0o755)
    p = os.path.join(d, "secret.bin")
    with open(p, "wb") as f:
        f.write(b"x" * 1000)
    os.chmod(p, 0)
    cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", UNREADABLE, p]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"ERROR {p}: permission denied" in out.stdout


@pytest.mark.unit
def test_file_shrinking_during_read_is_reported(random_file):
    """A file cut short after its first chunk was read: the rest of its reads, or its record's last check, say so. Many
    chunks (64 MiB): with four, the chain could finish before the first chunk's callback cut the file (a record of the
    whole file, rightly not an error; it failed so on a loaded machine)."""
    from metaextract_dask import FileChangedError, StreamingConfig, StreamingExtractor

    path = random_file(64 * 1024 * 1024)

    def truncate_after_first(chunk, metrics):
        if metrics.chunks_processed == 1:
            os.truncate(path, 1024 * 1024 + 5)

    ex = StreamingExtractor(StreamingConfig(strategy="sequential", chunk_size=1024 * 1024))
    with pytest.raises(FileChangedError) as info:
        ex.extract(path, callback=truncate_after_first)
    assert path in str(info.value)
