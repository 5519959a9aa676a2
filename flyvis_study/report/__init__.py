"""Block and study reports: figures, verdicts, notebook execution and HTML."""
