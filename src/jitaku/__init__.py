"""jitaku (自宅): a home server that keeps running."""

__version__ = "0.1.0"
