"""Command line entry point (filled in below by each stage)."""
def main() -> None:
    raise SystemExit("traitforge: CLI under construction")
