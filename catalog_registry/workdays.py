"""Working days, for reply deadlines: weekends and China's statutory holidays are off, and the
weekend days worked in exchange (调休) are on, as the State Council announces them each year
(the chinesecalendar package carries the announcements; outside the years it knows, only
weekends are off, and a deadline says so in the log)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import chinese_calendar

log = logging.getLogger("govbus.catalog")
_warned: set[int] = set()
CHINA = timezone(timedelta(hours=8))  # the platform's users' time: dates are theirs, not UTC's


def today() -> date:
    return datetime.now(CHINA).date()


def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            log.warning("no holiday calendar for %d: counting weekends only; upgrade chinesecalendar", day.year)
        return day.weekday() < 5


def add_workdays(start: date, days: int) -> date:
    """The `days`-th working day after `start` (the day of submission does not count)."""
    current = start
    counted = 0
    while counted < days:
        current += timedelta(days=1)
        if is_workday(current):
            counted += 1
    return current
