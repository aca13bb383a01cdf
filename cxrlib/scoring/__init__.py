"""Scoring generated images: feature extractors (Inception, the CXR domain extractor, xrv),
real features, FID/KID/precision/recall/density/coverage, diversity, real-vs-real floors,
snapshot sweeps and their figures.
"""
