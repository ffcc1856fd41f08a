"""The time range of a CF time axis: the NumPy fast path must say exactly what xarray's CF decoding says."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaextract_dask.readers.cftime_range import _whole_units_since, decode_range, iso

pytestmark = pytest.mark.unit


def xarray_iso(values: list[float], units: str, calendar: str) -> tuple[str, str]:
    """What decode_range gave before its fast path: xarray's decode_cf_datetime, to the second."""
    from xarray.coding.times import decode_cf_datetime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dates = decode_cf_datetime(np.array(values, dtype=float), units, calendar)
    return iso(dates[0]), iso(dates[-1])


@settings(max_examples=300, deadline=None)
@given(
    unit=st.sampled_from(["days", "day", "hours", "minutes", "seconds", "Days", "HOURS"]),
    year=st.integers(1850, 2100), month=st.integers(1, 12), day=st.integers(1, 28),
    clock=st.one_of(st.none(), st.tuples(st.integers(0, 23), st.integers(0, 59), st.one_of(st.none(), st.integers(0, 59)))),
    separator=st.sampled_from([" ", "T"]),
    style=st.sampled_from(["padded", "bare", "decimal"]),  # 01:02:03, 1:2:3, 01:02:03.0 (UDUNITS writes 00:00:0.0)
    zone=st.sampled_from(["", "", "Z", " UTC"]),
    calendar=st.sampled_from(["standard", "gregorian", "proleptic_gregorian"]),
    lo=st.integers(-30_000, 30_000), span=st.integers(0, 20_000),  # days: the dates stay within 1678-2262
    part=st.sampled_from([0.0, 0.5, 0.25, 0.125, 0.1]),  # 15.5 days (mid-month) is whole seconds; 0.5 seconds is not
)
def test_fast_path_equals_xarray(unit, year, month, day, clock, separator, style, zone, calendar, lo, span, part):
    since = f"{year}-{month:02d}-{day:02d}"
    if clock is not None:
        hh, mi, ss = clock
        f = "{}" if style == "bare" else "{:02d}"
        since += f"{separator}{f.format(hh)}:{f.format(mi)}" + (f":{f.format(ss)}" + (".0" if style == "decimal" else "") if ss is not None else "")
    since += zone if clock is not None else ""
    units = f"{unit} since {since}"
    values = [lo + part, lo + span + part]
    seconds = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}[unit.lower().rstrip("s")]
    whole = all((v.as_integer_ratio()[0] * seconds) % v.as_integer_ratio()[1] == 0 for v in values)
    assert (_whole_units_since(values, unit.lower().rstrip("s"), since, calendar) is not None) == whole  # the fast path answers
    found, warning = decode_range(values[0], values[1], units, calendar)
    assert warning is None
    assert (found["start"], found["end"]) == xarray_iso(values, units, calendar)


@pytest.mark.parametrize("units, calendar, values", [
    ("days since 2000-01-01", "noleap", [0.0, 59.0]),  # another calendar
    ("seconds since 2000-01-01", "standard", [0.5, 1.25]),  # fractions of a second
    ("days since 1000-01-01", "standard", [0.0, 1.0]),  # before 1678: cftime, Julian before 1582
    ("hours since 0000-01-01", "standard", [0.0, 24.0]),  # year zero
    ("days since 2000-01-01T00:00:00+05:00", "standard", [0.0, 1.0]),  # a time zone other than UTC
    ("days since 2000-01-01 00:00:00.5", "standard", [0.0, 1.0]),  # a fraction of a second in the reference
    ("months since 2000-01-01", "standard", [0.0, 1.0]),  # calendar months
])
def test_what_the_fast_path_leaves_to_xarray(units, calendar, values):
    import re

    unit, since = re.match(r"^\s*(\w+?)s?\s+since\s+(.+?)\s*$", units).groups()
    assert _whole_units_since(values, unit.lower(), since, calendar) is None
    found, _ = decode_range(values[0], values[1], units, calendar)
    assert "start" in found  # decoded all the same, by xarray or the cases after it


def test_an_impossible_reference_date_is_not_decoded_by_the_fast_path():
    assert _whole_units_since([0.0, 1.0], "day", "2001-02-30", "standard") is None


@settings(max_examples=500, deadline=None)
@given(
    calendar=st.sampled_from(["noleap", "365_day", "all_leap", "366_day", "360_day", "julian", "standard", "gregorian", "proleptic_gregorian"]),
    unit=st.sampled_from(["days", "hours", "minutes", "seconds", "months", "years"]),
    year=st.sampled_from([0, 1, 49, 850, 1581, 1582, 1583, 1850, 1949, 2000, 2300, 9000]), month=st.integers(1, 12), day=st.integers(1, 28),
    lo=st.integers(-20_000, 200_000), span=st.integers(0, 200_000),
    part=st.sampled_from([0.0, 0.5, 0.25, 0.1, 0.001]),
)
def test_what_cftime_decodes_is_what_xarray_decodes(calendar, unit, year, month, day, lo, span, part):
    units = f"{unit} since {year}-{month:02d}-{day:02d}"
    values = [lo + part, lo + span + part]
    found, warning = decode_range(values[0], values[1], units, calendar)
    try:
        expected = xarray_iso(values, units, calendar)
    except Exception:  # noqa: BLE001 - xarray cannot decode it either: decode_range's own cases take it
        return
    assert warning is None and (found["start"], found["end"]) == expected


def test_axes_that_cftime_decodes_need_no_xarray_or_pandas():
    """A parser process that decodes a noleap or 360-day axis (most model output), months since a date or a date
    before 1582 does not pay for xarray and pandas."""
    import subprocess
    import sys

    code = ("import sys; from metaextract_dask.readers.cftime_range import decode_range; "
            "r = [decode_range(0.5, 2.5, 'days since 1-1-1', 'noleap'), decode_range(375.0, 20175.0, 'days since 1949-12-01', '360_day'), "
            "decode_range(0.0, 229.0, 'months since 1958-1-1 00:00:00', 'standard'), "
            "decode_range(107.0, 108.0, 'days since 0049-09-01 00:00:00', 'standard')]; "
            "assert all('start' in found for found, _ in r), r; print(sorted(m for m in ('xarray', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_time_values_are_rebased_only_where_they_count_the_same_instants_exactly():
    """``rebase``: stored values counted from one date as counts from another, checked against cftime's own decoding;
    None for what cannot be so exactly (a unit of months, a fraction in an integer type, a missing value)."""
    import cftime

    from metaextract_dask.readers.cftime_range import rebase

    for values, units, to_units, calendar in (
            (np.array([0, 24, 48], "i4"), "hours since 1851-01-31T23:15:00", "hours since 1850-01-31T23:15:00", "proleptic_gregorian"),
            (np.array([0.5, 30.25], "f8"), "days since 1851-03-01", "hours since 1850-01-01 06:00:00", "noleap"),
            (np.array([0, 1], "i2"), "days since 0001-01-01", "days since 0000-12-01", "360_day"),
            (np.array([3600, 7200], "i8"), "seconds since 2000-01-01", "minutes since 1999-12-31 23:00", "standard")):
        out = rebase(values, units, to_units, calendar)
        assert out is not None and out.dtype == values.dtype, (units, to_units)
        assert list(cftime.num2date(out, to_units, calendar, has_year_zero=True)) == \
            list(cftime.num2date(values, units, calendar, has_year_zero=True))
    assert rebase(np.array([0, 12], "i4"), "hours since 2001-01-03", "days since 2001-01-01", "standard") is None  # 2.5 days
    assert rebase(np.array([0, 1], "i4"), "months since 2001-01-01", "months since 2000-01-01", "360_day") is None
    assert rebase(np.array([0, -999], "i4"), "days since 2001-01-01", "days since 2000-01-01", "standard", fill=-999) is None
    assert rebase(np.array([0, 1], "i4"), "days since 1500-01-01", "days since 1600-01-01", "standard") is None  # the reform
    assert rebase(np.array([0, 1], "i4"), "days since 2001-01-01 00:00 -9:00", "days since 2000-01-01", "standard") is None
