"""Catalog caching: entries, freshness, stores (memory, Redis), coalescing, read-through."""
