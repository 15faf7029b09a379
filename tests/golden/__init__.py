"""Golden files of the report tables and the deterministic stored runs they are rendered from."""
