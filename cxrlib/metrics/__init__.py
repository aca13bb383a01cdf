"""cxrlib.metrics."""
