"""What streams and captures share as context managers."""


class Finishing:
    """A context manager whose block finishes it (``close``) when it ends normally and drops
    it (``abort``) when it raises, so a failed run leaves nothing behind. One closed inside
    the block (``close()`` called there) is left as it is."""

    _closed = False

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            if not self._closed:
                self.close()
        else:
            self.abort()
        return False
