"""ctk-pull: images and registries (pull, push, login, images, tag, rm, inspect, save, load)."""
