"""Benchmarks that print figures (run each with `python -m render_assets.bench.<name>`)."""
