"""In-memory implementations of every core protocol, shipped for tests and embedding."""
