"""cxrlib.train."""
