"""When the model sees: frame decoding and limits, change gating, the scheduler (one slot per
stream, fair batches, cancellation, the stale-work cut) and per-frame timings."""
