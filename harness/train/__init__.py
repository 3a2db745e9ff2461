"""One run of training: preparing a backend, the epoch loop, sources, session, signals, progress."""
