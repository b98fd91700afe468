"""The chaos suite's marker: full variants run only with MEMQ_CHAOS_FULL=1."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "chaos_full: long chaos runs (20x30, Postgres restart, RabbitMQ); need MEMQ_CHAOS_FULL=1"
    )
