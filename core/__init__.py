"""The foundation every other package stands on: settings, errors, atomic files and locks, CLI helpers,
identity and access, model loading, the adapter registry and the prompt format shared by training and serving.

It imports nothing from the project's other packages."""
