"""Where images come from for `scan` and `watch` beyond the core's folder walk: bucket
listings, the folder and bucket watchers, and the actions taken on verdicts.

Depends on the `ldmscan` core only.
"""
