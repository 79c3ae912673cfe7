"""The shipped evals, one module each; each registers itself (evaluate/registry.py)."""
