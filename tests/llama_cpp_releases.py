"""The interfaces of onicai/llama_cpp_canister releases, for the methods prep calls.

Derived from the upstream history: `git show <tag>:src/llama_cpp.did` for every tag from v0.0.1 to
v0.16.4 (fetched 2026-12), keeping the methods prep calls; tags with identical interfaces for those
methods are grouped. Written here as Candid text so the interface check can be run against each.
"""

from __future__ import annotations

API_ERROR = "type ApiError = variant { Other : text; StatusCode : nat16 };"
STATUS = "type StatusCodeRecordResult = variant { Err : ApiError; Ok : record { status_code : nat16 } };"
# RunOutputRecord before v0.15.0 ...
RUN_OUTPUT_BEFORE_0_15 = """type RunOutputRecord = record {
  status_code : nat16; output : text; conversation : text; error : text; prompt_remaining : text;
  generated_eog : bool };"""
# ... and since: five opt nat64 token counts added.
RUN_OUTPUT_SINCE_0_15 = """type RunOutputRecord = record {
  status_code : nat16; output : text; conversation : text; error : text; prompt_remaining : text;
  generated_eog : bool; n_prompt_tokens : opt nat64; n_prompt_tokens_cached : opt nat64;
  n_prompt_tokens_decoded : opt nat64; n_tokens_generated : opt nat64;
  n_prompt_tokens_remaining : opt nat64 };"""
# FileUploadRecord in v0.0.1 held only the size; v0.1.0 added filename and filesha256.
UPLOAD_RECORD_0_0_1 = "type FileUploadRecord = record { filesize : nat64 };"
UPLOAD_RECORD_SINCE_0_1 = (
    "type FileUploadRecord = record { filename : text; filesize : nat64; filesha256 : text };"
)

COMMON_TYPES = """
type InputRecord = record { args : vec text };
type OutputRecordResult = variant { Ok : RunOutputRecord; Err : RunOutputRecord };
type MaxTokensRecord = record { max_tokens_update : nat64; max_tokens_query : nat64 };
type FileUploadInputRecord = record { filename : text; chunk : vec nat8; chunksize : nat64; offset : nat64 };
type FileUploadRecordResult = variant { Err : ApiError; Ok : FileUploadRecord };
type FileDownloadInputRecord = record { filename : text; chunksize : nat64; offset : nat64 };
type FileDownloadRecord = record {
  chunk : vec nat8; chunksize : nat64; filesize : nat64; offset : nat64; done : bool };
type FileDownloadRecordResult = variant { Err : ApiError; Ok : FileDownloadRecord };
"""
METHODS = """
  health : () -> (StatusCodeRecordResult) query;
  ready : () -> (StatusCodeRecordResult) query;
  check_access : () -> (StatusCodeRecordResult) query;
  load_model : (InputRecord) -> (OutputRecordResult);
  set_max_tokens : (MaxTokensRecord) -> (StatusCodeRecordResult);
  get_max_tokens : () -> (MaxTokensRecord) query;
  new_chat : (InputRecord) -> (OutputRecordResult);
  run_query : (InputRecord) -> (OutputRecordResult) query;
  run_update : (InputRecord) -> (OutputRecordResult);
  remove_prompt_cache : (InputRecord) -> (OutputRecordResult);
  file_download_chunk : (FileDownloadInputRecord) -> (FileDownloadRecordResult) query;
  file_upload_chunk : (FileUploadInputRecord) -> (FileUploadRecordResult);
"""
UPLOADED_FILE_DETAILS = (
    "  uploaded_file_details : (record { filename : text }) -> (FileUploadRecordResult) query;\n"
)
FILESYSTEM_FILE_SIZE = """  filesystem_file_size : (record { filename : text }) -> (variant {
    Err : ApiError; Ok : record { exists : bool; filename : text; filesize : nat64; msg : text } }) query;
"""


def _did(run_output: str, upload_record: str, extra_methods: str) -> str:
    types = "\n".join((API_ERROR, STATUS, run_output, upload_record, COMMON_TYPES))
    return f"{types}\nservice : {{{METHODS}{extra_methods}}}\n"


# tags -> the interface they share (for the methods prep calls)
RELEASES: dict[tuple[str, ...], str] = {
    ("v0.0.1",): _did(RUN_OUTPUT_BEFORE_0_15, UPLOAD_RECORD_0_0_1, ""),
    ("v0.1.0", "v0.2.0", "v0.3.0", "v0.3.1", "v0.4.0", "v0.4.2", "v0.5.0"): _did(
        RUN_OUTPUT_BEFORE_0_15, UPLOAD_RECORD_SINCE_0_1, UPLOADED_FILE_DETAILS
    ),
    (
        "v0.6.0rc", "v0.6.0rc2", "v0.7.1", "v0.7.2", "v0.7.3", "v0.8.0", "v0.9.0", "v0.10.0", "v0.10.1",
        "v0.11.0", "v0.12.0", "v0.12.1", "v0.13.0", "v0.14.0",
    ): _did(RUN_OUTPUT_BEFORE_0_15, UPLOAD_RECORD_SINCE_0_1, UPLOADED_FILE_DETAILS + FILESYSTEM_FILE_SIZE),
    ("v0.15.0", "v0.16.0", "v0.16.1", "v0.16.2", "v0.16.3", "v0.16.4"): _did(
        RUN_OUTPUT_SINCE_0_15, UPLOAD_RECORD_SINCE_0_1, UPLOADED_FILE_DETAILS + FILESYSTEM_FILE_SIZE
    ),
}  # fmt: skip
CURRENT = RELEASES[("v0.15.0", "v0.16.0", "v0.16.1", "v0.16.2", "v0.16.3", "v0.16.4")]
