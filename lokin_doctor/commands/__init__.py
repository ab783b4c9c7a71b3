"""Commands other than the checks: each module has register(app)."""
