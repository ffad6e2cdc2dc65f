"""The HTTP face of the service: handlers, the request pipeline around them, errors."""
