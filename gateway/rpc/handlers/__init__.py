"""Request handlers, one module per subject; ``gateway.rpc.methods`` lists them and builds the method registry."""
