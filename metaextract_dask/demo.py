"""Small corpora of real files (h5py, netCDF4, ffmpeg, random bytes).

``metaextract demo`` scans one; the tests and benchmarks build theirs here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np


def make_h5(path, n: int) -> str:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["n"] = n
        f.create_dataset("data", data=np.arange(n * 10 + 1, dtype="f8"), chunks=True)
    return str(path)


def make_nc(path, n: int) -> str:
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC" if n % 2 else "NETCDF3_CLASSIC") as ds:
        ds.createDimension("t", n + 1)
        v = ds.createVariable("v", "f4", ("t",))
        v.units = "K"
        v[:] = np.arange(n + 1, dtype="f4")
    return str(path)


#: the demo's CF files: (folder, latitude range, longitude range, years): a global model and a regional one with a year missing
CF_RUNS = [("cf/global", (-90.0, 90.0), (-180.0, 180.0), (2001, 2002, 2003, 2004)),
           ("cf/europe", (35.0, 70.0), (-10.0, 40.0), (2001, 2002, 2004))]


def make_cf_nc(path, year: int, lat: tuple[float, float], lon: tuple[float, float]) -> str:
    """A year of monthly near-surface air temperature on a small latitude/longitude grid, as a CF-1.8 netCDF-4 file."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.Conventions, ds.title, ds.source = "CF-1.8", f"demo monthly tas {year}", "metaextract demo"
        ds.createDimension("time", None)
        ds.createDimension("lat", 6)
        ds.createDimension("lon", 8)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.standard_name, t.axis = "days since 1850-01-01", "standard", "time", "T"
        start = (np.datetime64(f"{year}-01-01") - np.datetime64("1850-01-01")).astype(int)
        t[:] = start + 15.5 + 30.4 * np.arange(12)  # mid-month
        y = ds.createVariable("lat", "f4", ("lat",))
        y.units, y.standard_name, y.axis = "degrees_north", "latitude", "Y"
        y[:] = np.linspace(lat[0], lat[1], 6)
        x = ds.createVariable("lon", "f4", ("lon",))
        x.units, x.standard_name, x.axis = "degrees_east", "longitude", "X"
        x[:] = np.linspace(lon[0], lon[1], 8)
        v = ds.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True)
        v.units, v.standard_name, v.long_name = "K", "air_temperature", "Near-surface air temperature"
        months = np.arange(12)[:, None, None]
        v[:] = (288 - 30 * np.abs(np.linspace(lat[0], lat[1], 6))[None, :, None] / 90 + 8 * np.sin(months / 12 * 2 * np.pi)
                + np.zeros((12, 6, 8))).astype("f4")
    return str(path)


def make_video(path, seconds: float = 1.0, codec: str = "libx264") -> str:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", codec, "-c:a", "aac", "-shortest", str(path)],
                   check=True, timeout=120)
    return str(path)


def make_bin(path, size: int, seed: int) -> str:
    with open(path, "wb") as f:
        f.write(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return str(path)


def mixed_corpus(folder, n_h5=60, n_nc=60, n_video=20, n_bin=48, n_corrupt=10, video_sources=4) -> dict[str, list[str]]:
    """Valid files of every kind plus corrupt ones; returns {kind: [paths]}."""
    os.makedirs(folder, exist_ok=True)
    out: dict[str, list[str]] = {"hdf5": [], "netcdf": [], "video": [], "binary": [], "corrupt": []}
    for i in range(n_h5):
        out["hdf5"].append(make_h5(os.path.join(folder, f"grid_{i:03d}.h5"), i))
    for i in range(n_nc):
        out["netcdf"].append(make_nc(os.path.join(folder, f"obs_{i:03d}.nc"), i))
    sources = [make_video(os.path.join(folder, f"clip_{i:03d}.mp4"), 0.5 + 0.25 * i) for i in range(min(video_sources, n_video))]
    n_video = n_video if sources else 0
    out["video"].extend(sources)
    for i in range(len(sources), n_video):
        dst = os.path.join(folder, f"clip_{i:03d}.mp4")
        shutil.copy(sources[i % len(sources)], dst)
        out["video"].append(dst)
    for i in range(n_bin):
        out["binary"].append(make_bin(os.path.join(folder, f"blob_{i:03d}.bin"), 1000 + 97 * i, i))
    for i in range(n_corrupt):
        pool = [out[k][i % len(out[k])] for k in ("hdf5", "netcdf", "video") if out[k]]
        src = pool[i % len(pool)]
        dst = os.path.join(folder, f"corrupt_{i:02d}{os.path.splitext(src)[1]}")
        data = open(src, "rb").read()
        with open(dst, "wb") as f:
            f.write(data[: max(16, len(data) // 3)] if i % 2 else data[:8] + os.urandom(len(data) - 8))
        out["corrupt"].append(dst)
    return out


def demo_corpus(folder: str) -> tuple[list[str], list[str]]:
    """A small mixed corpus; returns (paths, notes on kinds left out)."""
    import importlib.util
    import shutil as sh

    notes = []
    kinds = dict(n_h5=6, n_nc=4, n_video=4, n_bin=6, n_corrupt=2)
    if not importlib.util.find_spec("h5py"):
        kinds["n_h5"] = 0
        notes.append("HDF5 files left out: pip install 'metaextract_dask[hdf5]'")
    if not importlib.util.find_spec("netCDF4"):
        kinds["n_nc"] = 0
        notes.append("NetCDF files left out: pip install 'metaextract_dask[netcdf]'")
    if not sh.which("ffmpeg"):
        kinds["n_video"] = 0
        notes.append("videos left out: install ffmpeg")
    kinds["n_corrupt"] = min(kinds["n_corrupt"], kinds["n_h5"], kinds["n_nc"])
    corpus = mixed_corpus(folder, **kinds)
    if kinds["n_nc"]:  # files with a time and a latitude/longitude coverage, for the report's timeline and map
        for sub, lat, lon, years in CF_RUNS:
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
            corpus["netcdf"] += [make_cf_nc(os.path.join(folder, sub, f"tas_{year}.nc"), year, lat, lon) for year in years]
    return sorted(p for paths in corpus.values() for p in paths), notes
