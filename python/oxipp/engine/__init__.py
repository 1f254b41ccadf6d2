"""The oxipp engine: a Rust runtime (sockets, heartbeat, control) driving a Python executor."""
