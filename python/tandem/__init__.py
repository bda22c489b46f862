# tandem: Python bindings of libtandem (ctypes over tandem.h), shaped like OpenVINO GenAI's Python API so that
# `import tandem as openvino_genai` runs code written for it; see README.md and docs/architecture.md (python/).
from ._lib import TandemError, lib as _clib
from .generation import (DecodedResults, EncodedResults, ExtendedPerfMetrics, GenerationConfig, MeanStdPair,
                         PerfMetrics, SDPerfMetrics, SDPerModelsPerfMetrics, StreamerBase, StreamingStatus,
                         StructuredOutputConfig, TextStreamer)
from .continuous_batching import (ContinuousBatchingPipeline, EncodedGenerationResult, GenerationFinishReason,
                                  GenerationHandle, GenerationOutput, GenerationResult, GenerationStatus,
                                  SchedulerConfig)
from .hub import hub_resolve, pull
from .pipeline import ChatHistory, LLMPipeline, TokenizedInputs, Tokenizer, draft_model
from .vlm import VLMPipeline
from . import hf  # tandem.hf.ModelForCausalLM / ModelForVisualCausalLM (optimum-intel's shape)

__version__ = _clib.tandem_version().decode()

__all__ = ["ChatHistory", "ContinuousBatchingPipeline", "DecodedResults", "EncodedGenerationResult",
           "EncodedResults", "ExtendedPerfMetrics", "GenerationConfig", "GenerationFinishReason", "GenerationHandle",
           "GenerationOutput", "GenerationResult", "GenerationStatus", "LLMPipeline", "MeanStdPair", "PerfMetrics",
           "SDPerModelsPerfMetrics", "SDPerfMetrics", "SchedulerConfig", "StreamerBase", "StreamingStatus",
           "StructuredOutputConfig", "TandemError", "TextStreamer", "TokenizedInputs", "Tokenizer", "VLMPipeline",
           "draft_model", "hub_resolve", "pull"]
