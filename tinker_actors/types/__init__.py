"""The wire types (pydantic v2): the one place that knows the Tinker JSON.

Request types are frozen and reject unknown fields; response types ignore unknown fields. Encode a
request with :func:`encode_json` (only the fields that were set, as WIRE-PROTOCOL §2.0 requires).

Every module path of the official SDKs' ``tinker.types`` (0.6.3 and 0.38) exists here too
(``types.tensor_data``, ``types.optim_step_request``, ``types.provenance_spans``, ...): each gives the same
objects as this package, for code that imports from them (the few of 0.38 still missing are listed in
docs/porting-from-official-sdk.md). Settings of 0.38 that are not built yet are held by the types but refused
when a request asks for them (``types/unsupported.py``).
"""

from tinker_actors.errors import RequestErrorCategory
from tinker_actors.types._base import RequestModel, ResponseModel, encode_json, to_wire_dict
from tinker_actors.types.aliases import FutureRetrieveResponse, LossFnInputs, LossFnOutput, ModelID, RequestID
from tinker_actors.types.audit_log_entry import AuditLogEntry
from tinker_actors.types.audit_log_response import AuditLogResponse
from tinker_actors.types.auth_token_response import AuthTokenResponse
from tinker_actors.types.billing import (
    BillingEventInfo,
    BillingUsageEvent,
    BillingUsageResponse,
    BillingUsageSession,
    CheckpointBillingEvent,
    CurrentCheckpointStorageUsageItem,
    CurrentCheckpointStorageUsageResponse,
    GetBillingUsageRequest,
    GetCurrentCheckpointStorageUsageRequest,
    SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent,
    StorageBillingEvent,
    TrainingBillingEvent,
)
from tinker_actors.types.checkpoints import (
    Checkpoint,
    CheckpointArchiveUrlResponse,
    CheckpointType,
    LoadWeightsRequest,
    LoadWeightsResponse,
    ParsedCheckpointTinkerPath,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    SetCheckpointTtlRequest,
    WeightsInfoRequest,
    WeightsInfoResponse,
    validate_checkpoint_name,
)
from tinker_actors.types.client_config_request import ClientConfigRequest
from tinker_actors.types.client_config_response import ClientConfigResponse
from tinker_actors.types.client_dynamic_config_response import ClientDynamicConfigResponse
from tinker_actors.types.copy_weights_request import CopyWeightsRequest
from tinker_actors.types.copy_weights_response import CopyWeightsResponse
from tinker_actors.types.create_custom_loss_request import CreateCustomLossRequest
from tinker_actors.types.create_custom_loss_response import CreateCustomLossResponse
from tinker_actors.types.custom_loss_graph import CustomLossGraph, CustomLossNode
from tinker_actors.types.custom_loss_input import CustomLossInput, CustomLossInputRank
from tinker_actors.types.datum import LOSS_INPUT_DTYPES, Datum
from tinker_actors.types.dmel_chunk import DmelChunk
from tinker_actors.types.external_weights_urls_response import ExternalWeightsUrlsResponse
from tinker_actors.types.future_completion import FutureCompletion, FutureFailed, FutureFinished
from tinker_actors.types.futures import (
    FutureRetrieveRequest,
    QueueState,
    RequestFailedResponse,
    TryAgainResponse,
    UntypedAPIFuture,
)
from tinker_actors.types.futures_retrieve_request import FuturesRetrieveRequest, SamplingSessionFuturesTarget
from tinker_actors.types.futures_retrieve_response import FuturesRetrieveResponse
from tinker_actors.types.join_sampling_session import JoinSamplingSessionRequest, JoinSamplingSessionResponse
from tinker_actors.types.model_input import (
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    ModelInputChunk,
)
from tinker_actors.types.optimizer import (
    AdamOptimizerConfig,
    DimuonOptimizerConfig,
    DimuonParams,
    OptimizerConfig,
    OptimParams,
)
from tinker_actors.types.prompt_alt_tokens import PromptAltTokens
from tinker_actors.types.provenance_spans import PromptProvenanceSpan, ProvenanceSpans, SampledProvenanceSpan
from tinker_actors.types.rest import (
    CheckpointsListResponse,
    Cursor,
    GetSamplerResponse,
    GetSessionResponse,
    ListSessionsResponse,
    TrainingRun,
    TrainingRunsResponse,
)
from tinker_actors.types.sampling import (
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    SampledSequence,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    StopReason,
)
from tinker_actors.types.sampling_client_kind import SamplingClientKind
from tinker_actors.types.save_weights_external_request import SaveWeightsExternalRequest
from tinker_actors.types.save_weights_external_response import (
    SaveWeightsExternalResponse,
    SaveWeightsExternalResponseInternal,
)
from tinker_actors.types.search_owner import AccessibleSearchOwner, OwnSearchOwner, SearchOwner, UserSearchOwner
from tinker_actors.types.session import (
    CreateSessionRequest,
    CreateSessionResponse,
    GetServerCapabilitiesResponse,
    HealthResponse,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    SupportedModel,
)
from tinker_actors.types.session_status import (
    ClientSessionFinished,
    ClientSessionFinishErrored,
    ClientSessionFinishInterrupted,
    ClientSessionFinishReason,
    ClientSessionFinishSuccess,
    SessionActive,
    SessionCancelled,
    SessionFailed,
    SessionFailedReason,
    SessionFailedRequestReason,
    SessionFailedSamplingSessionReason,
    SessionFailedTrainingRunReason,
    SessionStatus,
)
from tinker_actors.types.session_status_query import (
    ActiveSessionStatusQuery,
    CancelledSessionStatusQuery,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinishReasonType,
    FailedSessionStatusQuery,
)
from tinker_actors.types.sessions import (
    AssignSessionProjectRequest,
    CreateSessionInProjectRequest,
    FinishSessionRequest,
    SessionFinishStatus,
    SessionSearchCursor,
    SessionSearchOwner,
    SessionSearchRequest,
    SessionSearchResponse,
    SessionStatusQuery,
    SessionSummary,
)
from tinker_actors.types.telemetry import (
    EventType,
    GenericEvent,
    SessionEndEvent,
    SessionStartEvent,
    Severity,
    TelemetryBatch,
    TelemetryEvent,
    TelemetryResponse,
    TelemetrySendRequest,
    UnhandledExceptionEvent,
)
from tinker_actors.types.tensor import TensorData, TensorDtype
from tinker_actors.types.training import (
    LOSS_FUNCTIONS,
    AdamParams,
    CreateModelRequest,
    CreateModelResponse,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    ForwardRequest,
    GetInfoRequest,
    GetInfoResponse,
    LoraConfig,
    LossFnType,
    ModelData,
    OptimStepRequest,
    OptimStepResponse,
    UnloadModelRequest,
    UnloadModelResponse,
)
from tinker_actors.types.whoami_response import WhoamiResponse

__all__ = [
    "LOSS_FUNCTIONS",
    "LOSS_INPUT_DTYPES",
    "AccessibleSearchOwner",
    "ActiveSessionStatusQuery",
    "AdamOptimizerConfig",
    "AdamParams",
    "AssignSessionProjectRequest",
    "AuditLogEntry",
    "AuditLogResponse",
    "AuthTokenResponse",
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageResponse",
    "BillingUsageSession",
    "CancelledSessionStatusQuery",
    "Checkpoint",
    "CheckpointArchiveUrlResponse",
    "CheckpointBillingEvent",
    "CheckpointType",
    "CheckpointsListResponse",
    "ClientConfigRequest",
    "ClientConfigResponse",
    "ClientDynamicConfigResponse",
    "ClientFinishedSessionStatusQuery",
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinishReasonType",
    "ClientSessionFinishSuccess",
    "ClientSessionFinished",
    "CopyWeightsRequest",
    "CopyWeightsResponse",
    "CreateCustomLossRequest",
    "CreateCustomLossResponse",
    "CreateModelRequest",
    "CreateModelResponse",
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "CreateSessionInProjectRequest",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "Cursor",
    "CustomLossGraph",
    "CustomLossInput",
    "CustomLossInputRank",
    "CustomLossNode",
    "Datum",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "DmelChunk",
    "EncodedTextChunk",
    "EventType",
    "ExternalWeightsUrlsResponse",
    "FailedSessionStatusQuery",
    "FinishSessionRequest",
    "ForwardBackwardInput",
    "ForwardBackwardOutput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "FutureCompletion",
    "FutureFailed",
    "FutureFinished",
    "FutureRetrieveRequest",
    "FutureRetrieveResponse",
    "FuturesRetrieveRequest",
    "FuturesRetrieveResponse",
    "GenericEvent",
    "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest",
    "GetInfoRequest",
    "GetInfoResponse",
    "GetSamplerResponse",
    "GetServerCapabilitiesResponse",
    "GetSessionResponse",
    "HealthResponse",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "JoinSamplingSessionRequest",
    "JoinSamplingSessionResponse",
    "ListSessionsResponse",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "LoraConfig",
    "LossFnInputs",
    "LossFnOutput",
    "LossFnType",
    "ModelData",
    "ModelID",
    "ModelInput",
    "ModelInputChunk",
    "OptimParams",
    "OptimStepRequest",
    "OptimStepResponse",
    "OptimizerConfig",
    "OwnSearchOwner",
    "ParsedCheckpointTinkerPath",
    "PromptAltTokens",
    "PromptProvenanceSpan",
    "ProvenanceSpans",
    "QueueState",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "RequestID",
    "RequestModel",
    "ResponseModel",
    "SampleRequest",
    "SampleResponse",
    "SampledProvenanceSpan",
    "SampledSequence",
    "SamplingClientKind",
    "SamplingParams",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "SamplingSessionFuturesTarget",
    "SaveWeightsExternalRequest",
    "SaveWeightsExternalResponse",
    "SaveWeightsExternalResponseInternal",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "SearchOwner",
    "SessionActive",
    "SessionCancelled",
    "SessionEndEvent",
    "SessionFailed",
    "SessionFailedReason",
    "SessionFailedRequestReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedTrainingRunReason",
    "SessionFinishStatus",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SessionSearchCursor",
    "SessionSearchOwner",
    "SessionSearchRequest",
    "SessionSearchResponse",
    "SessionStartEvent",
    "SessionStatus",
    "SessionStatusQuery",
    "SessionSummary",
    "SetCheckpointTtlRequest",
    "Severity",
    "StopReason",
    "StorageBillingEvent",
    "SupportedModel",
    "TelemetryBatch",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "TensorData",
    "TensorDtype",
    "TrainingBillingEvent",
    "TrainingRun",
    "TrainingRunsResponse",
    "TryAgainResponse",
    "UnhandledExceptionEvent",
    "UnloadModelRequest",
    "UnloadModelResponse",
    "UntypedAPIFuture",
    "UserSearchOwner",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
    "WhoamiResponse",
    "encode_json",
    "to_wire_dict",
    "validate_checkpoint_name",
]
