//! The client's connection info (`ipcontroller[-<id>]-client.json`), read leniently: the file may
//! come from a stock controller or be a dict a user built, so only what a client needs is
//! required.

use oxipp_wire::connection::disambiguate;
use serde_json::Value;

use crate::ClientError;

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub registration: String,
    pub mux: String,
    pub task: String,
    pub control: String,
    pub broadcast: String,
    pub iopub: String,
    pub notification: String,
    pub key: String,
    pub signature_scheme: String,
    /// `leastload`, `pure`, …: the client refuses task flags under `pure`.
    pub task_scheme: String,
}

impl Endpoints {
    pub fn parse(text: &str) -> Result<Endpoints, ClientError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ClientError::Config(format!("not JSON: {e}")))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let interface = s("interface").ok_or_else(|| missing("interface"))?;
        let interface = disambiguate(&interface, s("location").as_deref().unwrap_or(""));
        let port = |k: &'static str| -> Result<String, ClientError> {
            let p = v
                .get(k)
                .and_then(|p| match p {
                    // engine files list broadcast ports; a client uses the first
                    Value::Array(a) => a.first().and_then(Value::as_u64),
                    other => other.as_u64(),
                })
                .filter(|p| *p > 0 && *p < 65536)
                .ok_or_else(|| missing(k))?;
            Ok(format!("{interface}:{p}"))
        };
        Ok(Endpoints {
            registration: port("registration")?,
            mux: port("mux")?,
            task: port("task")?,
            control: port("control")?,
            broadcast: port("broadcast")?,
            iopub: port("iopub")?,
            notification: port("notification")?,
            key: s("key").unwrap_or_default(),
            signature_scheme: s("signature_scheme").unwrap_or_else(|| "hmac-sha256".into()),
            task_scheme: s("task_scheme").unwrap_or_else(|| "leastload".into()),
        })
    }
}

fn missing(k: &str) -> ClientError {
    ClientError::Config(format!("no usable {k:?} in the connection info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_client_file() {
        let e = Endpoints::parse(
            r#"{"interface": "tcp://127.0.0.1", "registration": 1, "mux": 2, "task": 3,
                "control": 4, "broadcast": 5, "iopub": 6, "notification": 7, "key": "k",
                "task_scheme": "pure", "signature_scheme": "hmac-sha256"}"#,
        )
        .unwrap();
        assert_eq!(e.registration, "tcp://127.0.0.1:1");
        assert_eq!(e.notification, "tcp://127.0.0.1:7");
        assert_eq!(e.task_scheme, "pure");
    }

    #[test]
    fn bad_info_is_an_error() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"interface": "tcp://127.0.0.1", "mux": "x"}"#,
        ] {
            assert!(Endpoints::parse(bad).is_err(), "{bad}");
        }
    }
}
