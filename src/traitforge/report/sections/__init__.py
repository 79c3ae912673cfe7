"""One report section per eval, each rendered from its part of results.json (the eval names
its renderer in its registration: evaluate/registry.py)."""
