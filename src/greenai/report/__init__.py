"""Reports of runs: CodeCarbon-compatible CSV, JSON records, HTML, Markdown, run history, and
live Prometheus metrics (an exporter that observes a running tracker)."""
