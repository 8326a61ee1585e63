"""Transport: how a record reaches the backend.

- `logger.py`: the BatchingLogger (the caller enqueues, one worker writes);
- `journal.py`: the spill journal on local disk, replayed when the backend is back;
- `sync.py`: copying a store or a journal into another backend (`autolog sync`).
"""
