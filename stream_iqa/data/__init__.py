"""Data sets with human quality scores (MOS) and the natural-image pool, read in place from ``shared/data``."""
