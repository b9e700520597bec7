"""The engine of the local service: its state (sessions, futures, per-model ordering), storage and limits,
and the backends that do the work (the numpy model or zero work)."""
