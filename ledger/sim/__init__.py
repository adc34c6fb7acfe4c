"""The AI Video API simulated on loopback (the platform, its HTTP server) and the demo that runs against it."""
