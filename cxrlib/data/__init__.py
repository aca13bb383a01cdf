"""Reading, validating, preparing and splitting chest X-ray data sets."""
