"""The time range of a CF time coordinate, calendar-aware, never failing its file.

xarray's CF decoding handles the calendars of the CF conventions (standard,
gregorian, proleptic_gregorian, noleap/365_day, all_leap/366_day, 360_day,
julian) and values beyond the nanosecond range (through cftime). Real files
go beyond it: climatologies count ``hours since 0000-01-01`` (a year zero
the standard calendar does not have), and ``months since`` / ``years since``
are common. Those are decoded here with a note saying how; what truly
cannot be decoded keeps its raw numbers and units with a warning.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: the calendars xarray decodes with pandas (others go to cftime)
STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}
#: CF calendars (and their aliases) that count dates; "none" counts no dates
CALENDARS = STANDARD_CALENDARS | {"noleap", "365_day", "all_leap", "366_day", "360_day", "julian"}

#: UDUNITS lengths, used for fractional "months since" / "years since" values
UDUNITS_DAYS = {"month": 365.242198781 / 12, "year": 365.242198781}

_UNITS = re.compile(r"^\s*(\w+?)s?\s+since\s+(.+?)\s*$", re.IGNORECASE)


def iso(value: Any) -> str:
    """ISO 8601 text of a numpy datetime64 or a cftime datetime, to the second."""
    import numpy as np

    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value.astype("datetime64[s]")))
    return value.isoformat()


def timestamp(text: Any) -> Any:
    """An ISO date of any calendar as a naive ``datetime`` with the same fields, or None.

    A noleap or 360_day date whose fields name a proleptic Gregorian date
    (most of them) gets one; 2000-02-30, year 0 and negative years have none
    and live on in the ISO text column beside it.
    """
    import datetime

    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def _reference(since: str, calendar: str) -> Any:
    """The reference date as a cftime datetime, year zero allowed."""
    import cftime

    return cftime.datetime.strptime(_normalise_date(since), "%Y-%m-%d %H:%M:%S", calendar=calendar, has_year_zero=True)


def _normalise_date(text: str) -> str:
    """'0-1-1', '1990-01-01T00:00Z', '2000-1-1 12:00' -> 'YYYY-MM-DD HH:MM:SS'."""
    m = re.match(r"^(-?\d+)-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.\d*)?)?)?)?", text.strip())
    if not m:
        raise ValueError(f"cannot read the reference date {text!r}")
    y, mo, d, hh, mi, ss = (int(g) if g else 0 for g in m.groups())
    return f"{y:04d}-{mo:02d}-{d:02d} {hh:02d}:{mi:02d}:{ss:02d}"


def _calendar_months(values: list[float], unit: str, since: str, calendar: str) -> list[Any]:
    """Integral month or year counts as calendar months from the reference date."""
    import cftime

    ref = _reference(since, calendar)
    out = []
    for v in values:
        months = int(v) * (12 if unit == "year" else 1)
        total = ref.month - 1 + months
        out.append(cftime.datetime(ref.year + total // 12, total % 12 + 1, ref.day, ref.hour, ref.minute, ref.second,
                                   calendar=calendar, has_year_zero=True))
    return out


def _with_year_zero(values: list[float], unit: str, since: str, calendar: str) -> list[Any]:
    import warnings

    import cftime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cftime's CFWarning: the year-zero convention is the point here
        return list(cftime.num2date(values, f"{unit}s since {_normalise_date(since)}", calendar, has_year_zero=True))


#: seconds in the units a whole-number fast path takes; others (months, years, abbreviations) go to cftime or xarray
_UNIT_SECONDS = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
#: a plain date, its clock optional ("00:00:0.0" and "0:0:0" as UDUNITS writes them: whole seconds), in UTC or no zone
_PLAIN_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.0+)?)?)?(?:Z| ?UTC)?$")


def _whole_seconds(value: float, seconds: int) -> bool:
    """Whether ``value`` units of ``seconds`` each are exactly whole seconds (73.1 hours is not: the float 73.1 is
    a little less, and xarray decodes it so)."""
    n, d = float(value).as_integer_ratio()
    return (n * seconds) % d == 0


def _whole_units_since(values: list[float], unit: str, since: str, calendar: str) -> tuple[str, str] | None:
    """(start, end) ISO text for whole seconds counted in days/hours/minutes/seconds since a plain Gregorian date, or None.

    The common case of a small file's time axis, computed with NumPy's
    datetime64 in a few microseconds (xarray's CF decoding through pandas
    costs 0.3 ms a file). Anything else (fractions, time zones but UTC,
    other calendars, dates outside 1678-2261 where xarray goes to cftime)
    returns None and is decoded as xarray decodes it (``decode_range``);
    ``tests/test_cftime_range.py`` checks the two agree.
    """
    import numpy as np

    seconds = _UNIT_SECONDS.get(unit)
    date = _PLAIN_DATE.match(since.strip())
    if seconds is None or date is None or calendar not in STANDARD_CALENDARS:
        return None
    if not all(_whole_seconds(v, seconds) and abs(v) * seconds < 2**53 for v in values):  # 15.5 days: whole seconds
        return None
    y, mo, d, hh, mi, ss = (int(g) if g else 0 for g in date.groups())
    if not (1700 <= y <= 2200 and 1 <= mo <= 12 and 1 <= d <= 31 and hh < 24 and mi < 60 and ss < 60):
        return None
    try:
        ref = np.datetime64(f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}", "s")
    except ValueError:  # 2001-02-30
        return None
    found = [ref + np.timedelta64(int(v * seconds), "s") for v in values]
    if not all(np.datetime64("1678-01-01", "s") < t < np.datetime64("2262-01-01", "s") for t in found):
        return None
    return iso(found[0]), iso(found[1])


def counts_since(units: Any) -> tuple[int, str] | None:
    """(seconds in one unit, reference date) of time units that count days, hours, minutes or seconds since a plain
    date in UTC or no zone (``rebase`` takes those), or None (months, years, a time zone, words)."""
    parsed = _UNITS.match(units) if isinstance(units, str) else None
    if parsed is None or parsed.group(1).lower() not in _UNIT_SECONDS or not _PLAIN_DATE.match(parsed.group(2).strip()):
        return None
    return _UNIT_SECONDS[parsed.group(1).lower()], parsed.group(2).strip()


def rebase(values: Any, units: str, to_units: str, calendar: str | None, fill: Any = None) -> Any:
    """Stored time values counted in ``units`` as the same instants counted in ``to_units`` (both ``counts_since``),
    in their own type, or None where that cannot be done exactly: a unit or date ``counts_since`` declines, a calendar
    but CF's, a reference date before the Gregorian reform in a mixed calendar, a value equal to ``fill`` (a missing
    time), or a result the type cannot hold exactly (a whole number of the new unit where the type is an integer;
    where it is a float, a value that does not give back the instant it was). Files of one run written a year each,
    each counting from its own first day, become one axis so."""
    import numpy as np

    mine, theirs = counts_since(units), counts_since(to_units)
    cal = (calendar or "standard").strip().lower()
    if mine is None or theirs is None or cal not in CALENDARS:
        return None
    (unit, since), (to_unit, to_since) = mine, theirs
    try:
        ref, to_ref = _reference(since, cal), _reference(to_since, cal)
    except ValueError:  # 2001-02-30, or a date the calendar lacks
        return None
    if cal in ("standard", "gregorian") and min(ref.year, to_ref.year) < 1583:
        return None
    gap = ref - to_ref
    offset = gap.days * 86400 + gap.seconds  # whole seconds: the dates are
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or (fill is not None and bool((values == fill).any())):
        return None
    if values.dtype.kind in "iu":
        seconds = values.astype(np.int64) * unit + offset
        if (seconds % to_unit).any():
            return None
        out = seconds // to_unit
        limits = np.iinfo(values.dtype)
        return out.astype(values.dtype) if out.size == 0 or (limits.min <= out.min() and out.max() <= limits.max) else None
    out = ((values.astype(np.float64) * unit + offset) / to_unit).astype(values.dtype)
    back = (out.astype(np.float64) * to_unit - offset) / unit
    return out if np.array_equal(back.astype(values.dtype), values, equal_nan=True) else None


def _with_cftime(values: list[float], units: str, calendar: str) -> Any:
    """What xarray's ``decode_cf_datetime`` gives (or raises) for a calendar that is not a standard one, or for months
    and years since a date: pandas declines both and xarray hands them to ``cftime.num2date`` as this does, without
    importing xarray and pandas (0.4 s of a parser process's CPU, once per process: most climate model output counts
    noleap or 360-day years, and older files count months)."""
    import cftime
    import numpy as np

    return cftime.num2date(np.array(values, dtype=float), units, calendar, only_use_cftime_datetimes=True)


def _before_the_reform(values: list[float], units: str, since: str, calendar: str) -> Any:
    """The dates of a 'standard' (Julian then Gregorian) axis whose reference date and first date come before the
    reform (1582-10-15), as xarray decodes them: its pandas path refuses such a reference date, cftime decodes the
    values, and xarray keeps cftime's dates because the first is before the reform. None for any other axis (xarray
    decides)."""
    if calendar == "proleptic_gregorian":
        return None
    try:
        y, mo, d = (int(part) for part in _normalise_date(since).split(" ")[0].rsplit("-", 2))
    except ValueError:  # a reference date only pandas or cftime may read
        return None
    if (y, mo, d) >= (1582, 10, 15):
        return None
    dates = _with_cftime(values, units, calendar)
    first = dates[values.index(min(values))]
    return dates if first < type(first)(1582, 10, 15) else None


def decode_range(lo: float, hi: float, units: str, calendar: str | None) -> tuple[dict[str, Any], str | None]:
    """({start, end, calendar, note...}, warning or None) for a time coordinate's extreme values.

    Never raises: what cannot be decoded comes back as raw numbers and units
    with a warning.
    """
    import numpy as np

    cal = (calendar or "standard").strip().lower()
    out: dict[str, Any] = {"units": units, "calendar": cal, "raw_min": lo, "raw_max": hi}
    if cal == "none":
        out["note"] = "calendar 'none': the values count no dates"
        return out, None
    if cal not in CALENDARS:
        return out, f"unknown calendar {calendar!r}: kept the raw values"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return out, "time values are not finite: kept the raw values"
    parsed = _UNITS.match(str(units))
    if not parsed:
        return out, f"time units {units!r} are not '<unit> since <date>': kept the raw values"
    unit, since = parsed.group(1).lower(), parsed.group(2)
    values = [lo, hi]
    quick = _whole_units_since(values, unit, since, cal)
    if quick is not None:
        out["start"], out["end"] = quick
        return out, None
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dates: Any
            if cal not in STANDARD_CALENDARS or unit in UDUNITS_DAYS:
                dates = _with_cftime(values, units, cal)
            else:
                dates = _before_the_reform(values, units, since, cal)
            if dates is None:  # a standard calendar's dates: xarray's pandas path, cftime where pandas cannot go
                from pandas.errors import OutOfBoundsDatetime
                from xarray.coding.times import decode_cf_datetime

                try:
                    dates = decode_cf_datetime(np.array(values), units, cal)
                except (OverflowError, OutOfBoundsDatetime):
                    dates = decode_cf_datetime(np.array(values), units, cal, use_cftime=True)
    except Exception as first:  # noqa: BLE001 - the cases below, then raw values
        try:
            if unit in UDUNITS_DAYS:
                if all(float(v).is_integer() for v in values):
                    dates = _calendar_months(values, unit, since, cal)
                    out["note"] = f"'{unit}s since' counted as calendar {unit}s from the reference date"
                else:
                    dates = _with_year_zero([v * UDUNITS_DAYS[unit] for v in values], "day", since, cal)
                    out["note"] = f"fractional '{unit}s since': a {unit} taken as UDUNITS' {UDUNITS_DAYS[unit]:.6g} days"
            else:
                dates = _with_year_zero(values, unit, since, cal)
                if _normalise_date(since).startswith("0000"):
                    out["note"] = "reference year 0 read with a year zero (ISO 8601: year 0 is 1 BC)"
        except Exception:  # noqa: BLE001
            return out, f"time values could not be decoded ({first}); kept the raw values"
    out["start"], out["end"] = iso(dates[0]), iso(dates[-1])
    return out, None
