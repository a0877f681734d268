"""The web dashboard on the HTTP edge (docs/dashboard.md)."""
