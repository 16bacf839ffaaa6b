"""The client request layer: the method table, dispatch with the rules every request goes through, and the
handlers that read a request's fields and call the domain services (``gateway.domain``).

Infrastructure, not product rules: a handler decodes and answers; what is allowed and what is stored is
decided in ``gateway.domain``.
"""
