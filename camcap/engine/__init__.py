"""When the model sees: frame decoding and limits, the scheduler (one slot per stream, fair
batches, cancellation) and per-frame timings."""
