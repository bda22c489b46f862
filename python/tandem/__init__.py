# tandem: Python bindings of libtandem (ctypes over tandem.h), shaped like OpenVINO GenAI's Python API so that
# `import tandem as openvino_genai` runs code written for it; see README.md and docs/architecture.md (python/).
from ._lib import TandemError, lib as _clib
from .generation import (DecodedResults, GenerationConfig, MeanStdPair, PerfMetrics, StreamerBase,
                         StreamingStatus, TextStreamer)
from .pipeline import ChatHistory, LLMPipeline, TokenizedInputs, Tokenizer, draft_model

__version__ = _clib.tandem_version().decode()

__all__ = ["ChatHistory", "DecodedResults", "GenerationConfig", "LLMPipeline", "MeanStdPair", "PerfMetrics",
           "StreamerBase", "StreamingStatus", "TandemError", "TextStreamer", "TokenizedInputs", "Tokenizer",
           "draft_model"]
