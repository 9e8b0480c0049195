"""Errors users see: a clear sentence, printed without a traceback (CLI exit 2, HTTP 4xx)."""


class DigitocrError(Exception):
    """An error caused by the user's input (a file, a flag, an image): reported in one line, exit 2."""

    http_status = 400


class ImageError(DigitocrError):
    """An image that cannot be read: not decodable, truncated, empty (HTTP 400)."""

    http_status = 400


class UnsupportedImageError(ImageError):
    """A file type digitocr does not read (HTTP 415)."""

    http_status = 415


class ImageTooLargeError(ImageError):
    """More pixels (or bytes) than the configured limit: refused before decoding it all (HTTP 413)."""

    http_status = 413


class NoDigitError(ImageError):
    """A readable image with no ink in it, asked to be classified as one digit (HTTP 422)."""

    http_status = 422
