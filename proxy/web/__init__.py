"""The HTTP face of the service: handlers, middlewares and route table."""
