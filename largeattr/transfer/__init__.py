"""Moving blob bytes between a process and S3: streaming, multipart, resumable, verified.

The package exports the public configuration; the code that moves bytes imports what it
needs from the submodules:

* ``config``: ``TransferConfig``, sizes and S3's limits;
* ``digests``: SHA-256 and CRC32 of sources; ``streams``: reading sources;
* ``put``: one PutObject; ``parts`` and ``multipart``: multipart upload, one part reader
  per kind of source and one sender; ``copy``: server-side copy;
* ``uploads``: multipart uploads as S3 keeps them (create, complete, list, abort);
* ``download``: streaming an object back, verified.

Integrity: a single PutObject sends a SHA-256 checksum that S3 verifies; a multipart upload
sends a CRC32 per part and, by default, a full-object CRC32 that S3 verifies on completion.
The SHA-256 of the content is in the object's key and in the item, and readers verify it.
"""

from largeattr.transfer.config import (
    COMPOSITE,
    FULL_OBJECT,
    MAX_OBJECT_SIZE,
    MULTIPART_CHECKSUMS,
    GiB,
    KiB,
    MiB,
    MultipartChecksum,
    TransferConfig,
    human_size,
)

__all__ = [
    "COMPOSITE",
    "FULL_OBJECT",
    "MAX_OBJECT_SIZE",
    "MULTIPART_CHECKSUMS",
    "GiB",
    "KiB",
    "MiB",
    "MultipartChecksum",
    "TransferConfig",
    "human_size",
]
