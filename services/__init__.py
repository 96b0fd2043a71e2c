"""Processes around the engine: embedded NATS, step workers, clients, CLI."""
