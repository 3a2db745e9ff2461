"""Framework backends for bench, one package per framework, imported lazily by name."""
