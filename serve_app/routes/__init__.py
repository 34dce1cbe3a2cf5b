"""HTTP routers of the ingress, one module per feature."""
