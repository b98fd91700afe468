"""memq benchmarks: `python -m benchmarks.run [--quick] [--out FILE]`.

Every figure is measured against real services (Postgres, Redis, a `memq worker`
subprocess, the scripted LLM in a subprocess) and printed beside a baseline
measured in the same run. See benchmarks/run.py.
"""
