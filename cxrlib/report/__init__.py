"""cxrlib.report."""
