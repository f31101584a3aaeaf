"""The HTTP layer: routes, authentication, request parsing and JSON errors."""
