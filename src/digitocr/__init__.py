"""digitocr: handwritten-digit OCR with the classic MNIST CNN, made fast on a CPU."""

__version__ = "0.1.0"
