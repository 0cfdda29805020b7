"""Read models rebuilt from the event stream: each projection keeps its own tables and
its own stream position in the view database, advanced by the shared runner."""
