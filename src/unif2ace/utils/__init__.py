"""Small shared helpers (I/O, seeding, device policy). Imports nothing else from unif2ace."""
