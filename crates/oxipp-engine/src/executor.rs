//! The executor side of the contract, in Rust: the trait tests implement, and [`run`], the same
//! loop `oxipp.engine.app` runs in Python (section 2 of docs/engine-runtime.md).

use std::sync::Arc;

use oxipp_wire::Frame;
use serde_json::Value;

use crate::queue::{Kind, Request};
use crate::runtime::Runtime;

/// What an executor made of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: String,
    pub content: Value,
    pub buffers: Vec<Frame>,
    pub dependencies_met: bool,
}

/// Runs user code. `handle` returns `None` for request types that get no reply.
pub trait Executor {
    fn handle(&mut self, rt: &Runtime, req: &Arc<Request>) -> Option<Outcome>;
    fn clear(&mut self, _rt: &Runtime) {}
}

/// Serves requests until a `shutdown` item arrives. After an `execute_request` that failed
/// without `stop_on_error: false`, queued requests are aborted (ipykernel's stop-on-error).
pub fn run(rt: &Runtime, ex: &mut dyn Executor) {
    while let Some(req) = rt.next_request(None) {
        match req.kind {
            Kind::Shutdown => return,
            Kind::Clear => {
                ex.clear(rt);
                let _ = rt.reply(&req, r#"{"status": "ok"}"#, vec![], "ok", true);
            }
            Kind::Shell => {
                let Some(o) = ex.handle(rt, &req) else {
                    // no reply, but clients still expect busy -> idle (as ipykernel sends)
                    let idle = r#"{"execution_state": "idle"}"#;
                    let _ = rt.publish("status", idle, Some(&req), None, vec![]);
                    continue;
                };
                let text = serde_json::to_string(&o.content).unwrap_or_else(|_| "{}".into());
                if let Err(e) = rt.reply(&req, &text, o.buffers, &o.status, o.dependencies_met) {
                    tracing::error!("reply to {} failed: {e}", req.msg_id);
                }
                if req.msg_type == "execute_request" && o.status == "error" && stop_on_error(&req) {
                    rt.abort_queued();
                }
            }
        }
    }
}

fn stop_on_error(req: &Request) -> bool {
    serde_json::from_slice::<Value>(&req.content)
        .ok()
        .and_then(|c| c.get("stop_on_error").and_then(Value::as_bool))
        .unwrap_or(true)
}
