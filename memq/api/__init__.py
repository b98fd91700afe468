"""`memq serve`: the HTTP API, a second entry point beside the CLI.

app.py builds the FastAPI app; deps.py holds what every route shares (the
caller's tenant, the operations, the run watcher); routes/ has one module per
route family; models/ the request and response shapes; convert.py turns memq
rows into Letta's shapes. No step runs in this process: sends are committed to
Postgres and the broker is rung, as the CLI does.
"""
