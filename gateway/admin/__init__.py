"""The signed admin HTTP API: ``app`` (endpoints), ``auth`` (signature check), ``signing`` (pure).

Kept free of imports so the CLI can use ``gateway.signing`` without loading FastAPI.
"""
