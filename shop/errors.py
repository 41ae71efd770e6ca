class ShopError(Exception):
    """A failure the customer is told about: a safe message and the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
