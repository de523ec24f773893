"""What captions become: one caption-event record (record.py) and the writers built on it
(writers.py: WebVTT, SRT, JSON Lines, text), written through files that never appear half-written
(files.py)."""
