"""The DORA summary and its HTML report: trailing-window figures per org, team and service,
rated against the DORA performance levels."""
