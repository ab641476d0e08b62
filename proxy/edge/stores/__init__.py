"""Where state lives: the key-value state store (embedded SQLite or Redis, one
interface in `state`) and the content-addressed blob store for files."""
