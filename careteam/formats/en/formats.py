"""One way of writing dates in English pages, whatever the region: "2 Dec 2026" and
"2 Dec 2026, 06:32" (day first, month in letters: never ambiguous between US and UK
readers). Templates use `|date` and `|date:"DATETIME_FORMAT"`, never a format of their own."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j M"
YEAR_MONTH_FORMAT = "M Y"
FIRST_DAY_OF_WEEK = 1
