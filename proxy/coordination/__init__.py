"""Cross-replica coordination over Redis: a guarded client, deployment locks, wake-ups."""
