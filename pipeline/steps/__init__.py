"""The five steps of the chain, one module each: ``tokenizer``, ``tokenize``, ``prior``, ``sample``, ``fid``.

Each module has the same parts: ``fingerprint(...)`` of its inputs, ``is_complete(out)`` (its outputs are whole),
``run(...)`` (writes its outputs atomically and records the fingerprint there), and ``step(...)``, which binds them
to a run directory for the runner (pipeline/runner.py); the runner skips a step that is complete with the same
fingerprint. Importing this package imports none of them: each pulls in torch and Lightning."""
