"""Pure functions: a spec (plus names) in, Kubernetes objects or patches out. No I/O,
so every decision the operator makes about a Job or a Deployment is unit-tested here."""
