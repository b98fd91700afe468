"""The `memq` command line: typer + rich, importing the heavy parts only when a command runs."""
