from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Content-hashed, compressed names once `collectstatic` has run; plain names before it.

    A fresh checkout with production settings still works (WhiteNoise then serves the files
    straight from the app), and `collectstatic` switches to hashed, forever-cacheable files.
    """

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # no manifest yet
            return name
        return super().stored_name(name)
