"""Who calls: named API keys (from settings or a re-read file) and caller tokens."""
