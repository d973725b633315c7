"""Reports of runs: CodeCarbon-compatible CSV, JSON records, HTML, Markdown, run history."""
