"""Catalog versions: numbered deployment-wide, kept for diffs, announced to streams and webhooks."""
