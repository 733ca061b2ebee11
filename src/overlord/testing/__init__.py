"""In-memory implementations of the core protocols, for tests and for embedding the Overlord."""
