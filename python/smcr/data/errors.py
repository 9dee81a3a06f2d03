"""Typed errors of the data readers. Every message names the path and what was expected."""

from __future__ import annotations


class DatasetError(ValueError):
    """Base class: a dataset on disk is not what the reader expects."""


class DatasetNotFoundError(DatasetError):
    """The root folder (or a file the layout needs) does not exist."""


class DatasetLayoutError(DatasetError):
    """Wrong or partial layout: a required folder or list file is missing."""


class EmptyDatasetError(DatasetError):
    """A folder or list that must hold images holds none."""


class BadFileNameError(DatasetError):
    """An image name does not follow the layout's naming convention."""


class CorruptImageError(DatasetError):
    """An image file cannot be decoded."""


class UnmatchedQueryError(DatasetError):
    """A query identity has no gallery image from another camera (re-ID evaluation would
    have nothing to retrieve for it)."""
