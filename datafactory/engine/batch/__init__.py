"""Batch mode (``provider.mode: batch``): the online record flow, run in passes whose cache misses are
sent as provider batches (Files + Batches APIs) instead of one request each. See ``driver.py``."""
