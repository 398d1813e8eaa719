"""Config: load, validate and compile tenant and mapping files (see engine.config.model)."""
