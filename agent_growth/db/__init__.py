"""Database access: the tables, the engine and session handling."""
