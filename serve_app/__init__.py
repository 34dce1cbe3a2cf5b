"""Ray Serve application: FastAPI ingress in front of XTTS model replicas."""
