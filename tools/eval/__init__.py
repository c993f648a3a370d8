"""Quality on real clips: the check set and reference metrics."""
