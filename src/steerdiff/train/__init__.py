"""Training: network builders, denoiser training, classifier training.

Modules:

- ``training``: was ``steerdiff.training``
- ``nets``: was ``steerdiff.nets``
- ``classifier``: was ``steerdiff.classifier``
"""
