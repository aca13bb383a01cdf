"""cxrlib.models."""
