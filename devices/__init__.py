"""Device backends: run a model file on a target runtime and return latency samples.

Knows nothing of search spaces: it takes model files and input shapes.
"""
