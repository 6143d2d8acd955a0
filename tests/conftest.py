pytest_plugins = ["tests.support.registry_fixtures"]
