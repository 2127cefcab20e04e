from ingest.chunking.chunker import CHUNKER_VERSION, Chunk, chunk_document
from ingest.chunking.headings import Heading, detect_heading

__all__ = ["CHUNKER_VERSION", "Chunk", "chunk_document", "Heading", "detect_heading"]
