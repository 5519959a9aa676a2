"""The study: run specs and seeds, one run end to end, runners, run files, results, blocks."""
