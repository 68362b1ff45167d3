"""Device-side management (avocadoctl's job): the store, the enabled set per OS release,
dependencies and order, hooks, and `strata ext`. See api.py for the contract the CLI and the
varlink service use."""
