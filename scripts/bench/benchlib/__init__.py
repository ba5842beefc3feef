"""fleet benchmark harness: see scripts/bench/README.md."""
