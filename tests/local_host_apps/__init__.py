"""Sample function apps for the local Functions host's tests, and a harness that runs the host on them."""
