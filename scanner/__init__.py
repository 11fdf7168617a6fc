"""Where images come from for `scan` and `watch`: folder walks, bucket listings, observers.

Depends on the `ldmscan` core only.
"""
