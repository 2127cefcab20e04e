"""Tools the model may call: the registry (typed tools, permissions, validation, timeouts) and plug-ins."""
