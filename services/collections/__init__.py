"""Collections at the edges: statement rendering."""
