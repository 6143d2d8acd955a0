pytest_plugins = [
    "tests.support.containerd_fixtures",
    "tests.support.registry_fixtures",
    "tests.support.image_fixtures",
]
