//! Every message type string used on the wire, in one place, so a typo is a compile error.

pub const CONNECTION_REQUEST: &str = "connection_request";
pub const CONNECTION_REPLY: &str = "connection_reply";
pub const REGISTRATION_REQUEST: &str = "registration_request";
pub const REGISTRATION_REPLY: &str = "registration_reply";
/// A `registration_reply` content key oxipp's controller adds (stock's has no such key): it
/// notices an engine's death when the engine's heart connection closes, so an oxipp engine
/// registered with it needs no nanny process to report its death.
pub const NOTICES_CLOSED_CONNECTIONS: &str = "oxipp_notices_closed_connections";
pub const UNREGISTRATION_REQUEST: &str = "unregistration_request";
pub const QUEUE_REQUEST: &str = "queue_request";
pub const QUEUE_REPLY: &str = "queue_reply";
pub const RESULT_REQUEST: &str = "result_request";
pub const RESULT_REPLY: &str = "result_reply";
pub const HISTORY_REQUEST: &str = "history_request";
pub const HISTORY_REPLY: &str = "history_reply";
pub const DB_REQUEST: &str = "db_request";
pub const DB_REPLY: &str = "db_reply";
pub const PURGE_REQUEST: &str = "purge_request";
pub const PURGE_REPLY: &str = "purge_reply";
pub const RESUBMIT_REQUEST: &str = "resubmit_request";
pub const RESUBMIT_REPLY: &str = "resubmit_reply";
pub const SHUTDOWN_REQUEST: &str = "shutdown_request";
pub const SHUTDOWN_REPLY: &str = "shutdown_reply";
pub const LOAD_REQUEST: &str = "load_request";
pub const LOAD_REPLY: &str = "load_reply";
pub const BECOME_DASK_REQUEST: &str = "become_dask_request";
pub const BECOME_DASK_REPLY: &str = "become_dask_reply";
pub const STOP_DISTRIBUTED_REQUEST: &str = "stop_distributed_request";
pub const STOP_DISTRIBUTED_REPLY: &str = "stop_distributed_reply";
pub const HUB_ERROR: &str = "hub_error";

pub const REGISTRATION_NOTIFICATION: &str = "registration_notification";
pub const UNREGISTRATION_NOTIFICATION: &str = "unregistration_notification";
pub const SHUTDOWN_NOTIFICATION: &str = "shutdown_notification";

pub const APPLY_REQUEST: &str = "apply_request";
pub const APPLY_REPLY: &str = "apply_reply";
pub const EXECUTE_REQUEST: &str = "execute_request";
pub const EXECUTE_REPLY: &str = "execute_reply";

pub const CLEAR_REQUEST: &str = "clear_request";
pub const CLEAR_REPLY: &str = "clear_reply";
pub const ABORT_REQUEST: &str = "abort_request";
pub const ABORT_REPLY: &str = "abort_reply";
pub const SIGNAL_REQUEST: &str = "signal_request";

pub const STATUS: &str = "status";
pub const STREAM: &str = "stream";
pub const EXECUTE_INPUT: &str = "execute_input";
pub const EXECUTE_RESULT: &str = "execute_result";
pub const DISPLAY_DATA: &str = "display_data";
pub const ERROR: &str = "error";
pub const DATA_MESSAGE: &str = "data_message";
pub const IOPUB_WELCOME: &str = "iopub_welcome";

/// The reply type for a request type: `foo_request` -> `foo_reply`, anything else -> `<type>_reply`.
pub fn reply_type(request_type: &str) -> String {
    match request_type.strip_suffix("_request") {
        Some(stem) => format!("{stem}_reply"),
        None => format!("{request_type}_reply"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reply_types() {
        assert_eq!(super::reply_type("apply_request"), "apply_reply");
        assert_eq!(super::reply_type("bogus"), "bogus_reply");
    }
}
