"""The memorisation audit: the nearest real training image of each synthetic one, near-copies,
and its figures."""
