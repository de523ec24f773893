"""Server-side inputs, read with PyAV: video files (probe.py, sampler.py) and live sources."""
