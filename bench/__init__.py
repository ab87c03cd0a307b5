"""Benchmarks: figures, not pass/fail. Each module has a `main()` that prints a short table."""
