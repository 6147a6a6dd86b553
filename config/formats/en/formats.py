"""One date format across the console: the operator pages and Django's own fields show
2026-11-29 14:05:09, never "Nov. 29, 2026, 2:05 p.m." next to it."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
