//! The engine's connection info (`ipcontroller-engine.json`), read leniently.
//!
//! Parsed from a JSON value rather than `oxipp_wire::connection::EngineInfo` because the file
//! may come from a stock controller or from `$IPP_CONNECTION_INFO`, where optional keys
//! (`ssh`, `curve_serverkey`, `location`) can be missing; only what an engine needs is required.

use serde_json::Value;

use oxipp_wire::connection::disambiguate;

use crate::EngineError;

/// The URLs an engine connects to, plus the signing key.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub registration: String,
    pub mux: String,
    pub task: String,
    pub control: String,
    pub iopub: String,
    pub hb_ping: String,
    pub hb_pong: String,
    pub broadcast: Vec<String>,
    pub key: String,
    pub signature_scheme: String,
}

impl Endpoints {
    pub fn parse(text: &str) -> Result<Endpoints, EngineError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| EngineError::Config(format!("not JSON: {e}")))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let interface = s("interface").ok_or_else(|| missing("interface"))?;
        let interface = disambiguate(&interface, s("location").as_deref().unwrap_or(""));
        let port = |k: &'static str| -> Result<String, EngineError> {
            let p = v.get(k).and_then(Value::as_u64).ok_or_else(|| missing(k))?;
            Ok(format!("{interface}:{p}"))
        };
        let broadcast = v
            .get("broadcast")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|p| format!("{interface}:{p}"))
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty())
            .ok_or_else(|| missing("broadcast"))?;
        Ok(Endpoints {
            registration: port("registration")?,
            mux: port("mux")?,
            task: port("task")?,
            control: port("control")?,
            iopub: port("iopub")?,
            hb_ping: port("hb_ping")?,
            hb_pong: port("hb_pong")?,
            broadcast,
            key: s("key").unwrap_or_default(),
            signature_scheme: s("signature_scheme").unwrap_or_else(|| "hmac-sha256".into()),
        })
    }
}

fn missing(k: &str) -> EngineError {
    EngineError::Config(format!("no usable {k:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_disambiguates() {
        let e = Endpoints::parse(
            r#"{"interface": "tcp://*", "location": "127.0.0.1", "registration": 1, "mux": 2,
                "task": 3, "control": 4, "iopub": 5, "hb_ping": 6, "hb_pong": 7,
                "broadcast": [8, 9], "key": "k", "signature_scheme": "hmac-sha256"}"#,
        )
        .unwrap();
        assert_eq!(e.registration, "tcp://127.0.0.1:1");
        assert_eq!(e.broadcast, vec!["tcp://127.0.0.1:8", "tcp://127.0.0.1:9"]);
    }

    #[test]
    fn missing_keys_are_errors_not_panics() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"interface": "tcp://127.0.0.1", "broadcast": []}"#,
        ] {
            assert!(Endpoints::parse(bad).is_err(), "{bad}");
        }
    }
}
