"""Latency lookup tables: profile every layer of a search space on a device into a versioned table."""
