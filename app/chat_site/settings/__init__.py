"""Settings package: ``base`` holds what every environment shares; ``dev`` is for a
laptop, ``deploy`` for every server (staging and production), ``test`` for pytest."""
