"""1NCE Product Proxy: an async caching proxy for the 1NCE Management API product catalog."""

__version__ = "0.1.0"
