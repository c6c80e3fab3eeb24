"""The HTTP layer: blueprints parse, validate, call a service and shape the answer."""
