"""1NCE Product Proxy: an async caching proxy for the 1NCE Management API product catalog."""

__version__ = "0.1.0"
USER_AGENT = f"1nce-product-proxy/{__version__}"
"""How the service names itself in the requests it sends (to 1NCE, to webhook receivers)."""
