"""The rules no text may break, as data and pure functions: send windows and quiet hours per
jurisdiction (`data/us_send_rules.json`), time zones from area codes
(`data/multi_zone_area_codes.json`), STOP/HELP/START keywords. No I/O beyond reading its data
files."""
