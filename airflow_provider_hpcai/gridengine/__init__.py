"""Grid Engine support: pure command builders and parsers (:mod:`.commands`)."""
