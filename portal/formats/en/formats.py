"""The portal's one way of writing dates: "10 Nov 2026" and "10 Nov 2026 14:05", in TIME_ZONE.

Django takes the active language's formats before the settings' ones; this module (FORMAT_MODULE_PATH)
puts the portal's formats first for English, whichever variant the server or the browser asks for.
"""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j M"
YEAR_MONTH_FORMAT = "M Y"
