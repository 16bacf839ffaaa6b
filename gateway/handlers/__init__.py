"""Request handlers, one module per subject; ``gateway.methods`` lists them and builds the method registry."""
