//! Controller configuration from the stock `ipcontroller` command line, environment and
//! `ipcontroller_config.py`.
//!
//! Stock launchers and the stock test suite pass traitlets-style options (`--ping=250`,
//! `--profile iptest`, `--HeartMonitor.period=200`, flags such as `--dictdb`), so this parser
//! speaks that dialect rather than clap's. Options we do not implement are accepted with a
//! warning, as traitlets does for unknown classes, so a stock launcher never fails to start us.

use std::path::{Path, PathBuf};

use oxipp_wire::profile::ProfileArgs;

/// Which task database backs the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbKind {
    /// Bounded in-memory store (stock DictDB; the stock default).
    Memory,
    /// SQLite file in the profile dir (stock SQLiteDB).
    Sqlite,
    /// Stores nothing (stock NoDB).
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: ProfileArgs,
    pub cluster_id: String,
    pub log_level: tracing::Level,
    pub log_to_file: bool,
    /// Heartbeat period in milliseconds (`--ping`, `HeartMonitor.period`).
    pub hb_period_ms: u64,
    /// Consecutive missed beats before an engine is declared dead.
    pub hb_max_misses: u32,
    pub client_ip: String,
    pub engine_ip: String,
    pub client_transport: String,
    pub engine_transport: String,
    pub location: Option<String>,
    pub ssh_server: String,
    pub engine_ssh_server: String,
    /// Ports to use before falling back to random ones (`--ports`, `--port`).
    pub ports: Vec<u16>,
    pub scheme: String,
    pub hwm: u32,
    /// Finished task ids the scheduler remembers for later `after`/`follow` dependencies.
    /// Stock remembers all of them forever (memory grows with every task); a dependency on
    /// an id older than this fails with `InvalidDependency`.
    pub remembered_tasks: usize,
    pub db: DbKind,
    pub dict_record_limit: usize,
    pub dict_size_limit: usize,
    pub dict_cull_fraction: f64,
    pub sqlite_filename: String,
    pub sqlite_location: Option<PathBuf>,
    pub sqlite_table: String,
    pub reuse_files: bool,
    pub restore_engines: bool,
    /// Seconds a registration may wait for its first heartbeat (None = stock default).
    pub registration_timeout: Option<f64>,
    pub broadcast_depth: u32,
    pub client_json_file: Option<String>,
    pub engine_json_file: Option<String>,
    /// HMAC key; `None` = generate a random one.
    pub key: Option<String>,
    pub signature_scheme: String,
    /// Grace period before tasks stranded on a dead engine are failed, letting replies that
    /// are already in flight arrive first. Stock waits 5 s; we wait much less so clients
    /// learn of the loss quickly.
    pub stranded_grace_ms: u64,
    /// Largest message accepted on the query channel.
    pub max_query_bytes: usize,
    /// Most registrations that may wait for their first heartbeat at once.
    pub max_pending_registrations: usize,
    /// Signatures remembered to reject replays.
    pub digest_history: usize,
    /// Interpreter that runs the dask.distributed scheduler for `become_dask_request`
    /// (`IPController.dask_python`; None = `$OXIPP_PYTHON` and the other fallbacks of
    /// [`crate::dask_process::python`]).
    pub dask_python: Option<String>,
    /// How long that scheduler may take to report its address before the request fails.
    pub dask_start_timeout_ms: u64,
    pub show_version: bool,
    pub show_help: bool,
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            profile: ProfileArgs::default(),
            cluster_id: String::new(),
            log_level: tracing::Level::INFO,
            log_to_file: false,
            hb_period_ms: 3000,
            hb_max_misses: 10,
            client_ip: "127.0.0.1".into(),
            engine_ip: "127.0.0.1".into(),
            client_transport: "tcp".into(),
            engine_transport: "tcp".into(),
            location: None,
            ssh_server: String::new(),
            engine_ssh_server: String::new(),
            ports: Vec::new(),
            scheme: "leastload".into(),
            hwm: 1,
            remembered_tasks: 100_000,
            db: DbKind::Memory,
            dict_record_limit: 1024,
            dict_size_limit: 1 << 30,
            dict_cull_fraction: 0.1,
            sqlite_filename: "tasks.db".into(),
            sqlite_location: None,
            sqlite_table: "ipython-tasks".into(),
            reuse_files: false,
            restore_engines: false,
            registration_timeout: None,
            broadcast_depth: 1,
            client_json_file: None,
            engine_json_file: None,
            key: None,
            signature_scheme: "hmac-sha256".into(),
            stranded_grace_ms: 300,
            max_query_bytes: 64 << 20,
            max_pending_registrations: 20_000,
            digest_history: 1 << 16,
            dask_python: None,
            dask_start_timeout_ms: 30_000,
            show_version: false,
            show_help: false,
            warnings: Vec::new(),
        }
    }
}

/// Short aliases of the stock controller (`--ping=250` = `--HeartMonitor.period=250`).
const ALIASES: &[(&str, &str)] = &[
    ("ssh", "IPController.ssh_server"),
    ("enginessh", "IPController.engine_ssh_server"),
    ("location", "IPController.location"),
    ("ip", "IPController.ip"),
    ("transport", "IPController.transport"),
    ("port", "IPController.regport"),
    ("ports", "IPController.ports"),
    ("ping", "HeartMonitor.period"),
    ("scheme", "TaskScheduler.scheme_name"),
    ("hwm", "TaskScheduler.hwm"),
    ("profile", "BaseIPythonApplication.profile"),
    ("profile-dir", "ProfileDir.location"),
    ("ipython-dir", "BaseIPythonApplication.ipython_dir"),
    ("log-level", "Application.log_level"),
    ("cluster-id", "BaseParallelApplication.cluster_id"),
    ("work-dir", "BaseParallelApplication.work_dir"),
    ("log-url", "BaseParallelApplication.log_url"),
    ("clean-logs", "BaseParallelApplication.clean_logs"),
    ("config", "BaseIPythonApplication.extra_config_file"),
    ("ident", "Session.session"),
    ("user", "Session.username"),
    ("keyfile", "Session.keyfile"),
];

/// Value-less flags.
const FLAGS: &[&str] = &[
    "usethreads",
    "sqlitedb",
    "mongodb",
    "dictdb",
    "nodb",
    "reuse",
    "restore",
    "log-to-file",
    "debug",
    "quiet",
    "init",
    "secure",
    "no-secure",
    "version",
    "help",
    "help-all",
    "h",
];

impl Config {
    /// Builds the configuration: defaults, then the profile's `ipcontroller_config.py`, then
    /// the command line (which wins), then environment overrides that stock also honours.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let opts = parse_argv(args)?;
        let mut cfg = Config::default();
        // Profile location options must be known before the config file can be found.
        for (k, v) in &opts {
            if is_profile_trait(k) {
                cfg.apply(k, v)?;
            }
        }
        let profile_dir = oxipp_wire::profile::resolve(&cfg.profile);
        let file = profile_dir.join("ipcontroller_config.py");
        if file.exists() {
            for (k, v) in parse_config_file(&file)? {
                if let Err(e) = cfg.apply(&k, &v) {
                    cfg.warnings.push(format!("{}: {e}", file.display()));
                }
            }
        }
        for (k, v) in &opts {
            cfg.apply(k, v)?;
        }
        if let Ok(k) = std::env::var("IPP_SESSION_KEY") {
            cfg.key = Some(k);
        }
        if cfg.cluster_id.is_empty() {
            cfg.cluster_id = oxipp_wire::profile::env_cluster_id();
        }
        if std::env::var("IPP_ENABLE_CURVE")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false)
        {
            return Err(
                "IPP_ENABLE_CURVE is set, but this oxipp build has no CurveZMQ support \
                        (our ZMTP speaks the NULL mechanism only); unset it or use TLS tunnels"
                    .into(),
            );
        }
        Ok(cfg)
    }

    /// The resolved profile directory.
    pub fn profile_dir(&self) -> PathBuf {
        oxipp_wire::profile::resolve(&self.profile)
    }

    /// Registration stall timeout, stock default `max(30, period/100)` seconds.
    pub fn registration_timeout_s(&self) -> f64 {
        self.registration_timeout
            .unwrap_or_else(|| (self.hb_period_ms as f64 / 100.0).max(30.0))
    }

    fn apply(&mut self, key: &str, value: &Value) -> Result<(), String> {
        let bad = |what: &str| format!("--{key}: expected {what}, got {value:?}");
        match key {
            // flags
            "usethreads" | "secure" | "no-secure" | "init" | "quiet" => {}
            "version" => self.show_version = true,
            "help" | "help-all" | "h" => self.show_help = true,
            "debug" => self.log_level = tracing::Level::DEBUG,
            "log-to-file" | "BaseParallelApplication.log_to_file" => {
                self.log_to_file = value.truthy()
            }
            "sqlitedb" => self.db = DbKind::Sqlite,
            "dictdb" => self.db = DbKind::Memory,
            "nodb" => self.db = DbKind::None,
            "mongodb" => {
                self.warnings.push(
                    "--mongodb: MongoDB is not supported by oxipp; using the in-memory store"
                        .into(),
                );
                self.db = DbKind::Memory;
            }
            "reuse" => self.reuse_files = true,
            "restore" => {
                self.restore_engines = true;
                self.reuse_files = true;
            }
            _ => {
                let trait_name = ALIASES
                    .iter()
                    .find(|(a, _)| *a == key)
                    .map(|(_, t)| *t)
                    .unwrap_or(key);
                return self.apply_trait(trait_name, value).map_err(|e| {
                    if e.is_empty() {
                        bad("a valid value")
                    } else {
                        e
                    }
                });
            }
        }
        Ok(())
    }

    fn apply_trait(&mut self, name: &str, v: &Value) -> Result<(), String> {
        let s = || v.as_string();
        let int = || {
            v.as_int()
                .ok_or_else(|| format!("{name}: expected an integer, got {v:?}"))
        };
        let float = || {
            v.as_float()
                .ok_or_else(|| format!("{name}: expected a number, got {v:?}"))
        };
        let (class, trait_) = name.split_once('.').unwrap_or(("", name));
        match (class, trait_) {
            ("BaseIPythonApplication" | "ProfileDir" | "IPController", "profile") => {
                self.profile.profile = Some(s())
            }
            ("ProfileDir", "location")
            | ("IPController" | "BaseIPythonApplication", "profile_dir") => {
                self.profile.profile_dir = Some(PathBuf::from(s()))
            }
            (_, "ipython_dir") => self.profile.ipython_dir = Some(PathBuf::from(s())),
            (_, "log_level") => self.log_level = parse_log_level(&s())?,
            (_, "cluster_id") => self.cluster_id = s(),
            ("HeartMonitor", "period") => self.hb_period_ms = int()?.max(1) as u64,
            ("HeartMonitor", "max_heartmonitor_misses") => {
                self.hb_max_misses = int()?.max(1) as u32
            }
            ("IPController", "ip") => {
                self.client_ip = s();
                self.engine_ip = s();
            }
            ("IPController", "client_ip") => self.client_ip = s(),
            ("IPController", "engine_ip") => self.engine_ip = s(),
            ("IPController", "transport") => {
                self.client_transport = s();
                self.engine_transport = s();
            }
            ("IPController", "client_transport") => self.client_transport = s(),
            ("IPController", "engine_transport") => self.engine_transport = s(),
            ("IPController", "location") => self.location = Some(s()),
            ("IPController", "ssh_server") => self.ssh_server = s(),
            ("IPController", "engine_ssh_server") => self.engine_ssh_server = s(),
            ("IPController", "ports" | "engine_ports" | "client_ports") => {
                self.ports.extend(parse_ports(v)?)
            }
            ("IPController", "regport" | "port") => self.ports.insert(0, int()? as u16),
            ("TaskScheduler", "scheme_name") => self.scheme = s(),
            ("TaskScheduler", "hwm") => self.hwm = int()?.max(0) as u32,
            ("TaskScheduler", "remembered_tasks") => self.remembered_tasks = int()?.max(1) as usize,
            ("IPController", "db_class") => {
                let c = s().to_ascii_lowercase();
                self.db = if c.contains("sqlite") {
                    DbKind::Sqlite
                } else if c.contains("nodb") {
                    DbKind::None
                } else {
                    DbKind::Memory
                };
            }
            ("DictDB", "record_limit") => self.dict_record_limit = int()?.max(1) as usize,
            ("DictDB", "size_limit") => self.dict_size_limit = int()?.max(1) as usize,
            ("DictDB", "cull_fraction") => self.dict_cull_fraction = float()?,
            ("SQLiteDB", "filename") => self.sqlite_filename = s(),
            ("SQLiteDB", "location") => self.sqlite_location = Some(PathBuf::from(s())),
            ("SQLiteDB", "table") => self.sqlite_table = s(),
            ("IPController", "reuse_files") => self.reuse_files = v.truthy(),
            ("IPController", "restore_engines") => {
                self.restore_engines = v.truthy();
                if self.restore_engines {
                    self.reuse_files = true;
                }
            }
            ("IPController", "registration_timeout") => self.registration_timeout = Some(float()?),
            ("IPController" | "HubFactory", "broadcast_scheduler_depth") => {
                self.broadcast_depth = int()?.clamp(0, 10) as u32
            }
            ("IPController", "client_json_file") => self.client_json_file = Some(s()),
            ("IPController", "engine_json_file") => self.engine_json_file = Some(s()),
            ("Session", "key") => self.key = Some(s()),
            ("Session", "keyfile") => {
                let text =
                    std::fs::read_to_string(s()).map_err(|e| format!("Session.keyfile: {e}"))?;
                self.key = Some(text.trim().to_string());
            }
            ("Session", "signature_scheme") => self.signature_scheme = s(),
            ("IPController", "stranded_grace") => {
                self.stranded_grace_ms = (float()? * 1000.0) as u64
            }
            ("IPController", "max_pending_registrations") => {
                self.max_pending_registrations = int()?.max(1) as usize
            }
            ("IPController", "dask_python") => self.dask_python = Some(s()),
            ("IPController", "dask_start_timeout") => {
                self.dask_start_timeout_ms = (float()?.max(0.0) * 1000.0) as u64
            }
            ("IPController", "enable_curve") if v.truthy() => {
                return Err(
                    "IPController.enable_curve: this oxipp build has no CurveZMQ support".into(),
                )
            }
            _ => self.warnings.push(format!(
                "ignoring unsupported option --{name}={}",
                v.as_string()
            )),
        }
        Ok(())
    }
}

fn is_profile_trait(k: &str) -> bool {
    matches!(
        k,
        "profile"
            | "profile-dir"
            | "ipython-dir"
            | "BaseIPythonApplication.profile"
            | "ProfileDir.location"
            | "BaseIPythonApplication.ipython_dir"
    )
}

fn parse_log_level(s: &str) -> Result<tracing::Level, String> {
    use tracing::Level;
    let lvl = match s.trim().to_ascii_uppercase().as_str() {
        "CRITICAL" | "FATAL" | "ERROR" | "50" | "40" => Level::ERROR,
        "WARN" | "WARNING" | "30" => Level::WARN,
        "INFO" | "20" => Level::INFO,
        "DEBUG" | "10" => Level::DEBUG,
        "0" | "TRACE" => Level::TRACE,
        other => match other.parse::<i64>() {
            Ok(n) if n >= 40 => Level::ERROR,
            Ok(n) if n >= 30 => Level::WARN,
            Ok(n) if n >= 20 => Level::INFO,
            Ok(_) => Level::DEBUG,
            Err(_) => return Err(format!("unknown log level {s:?}")),
        },
    };
    Ok(lvl)
}

fn parse_ports(v: &Value) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    let text = match v {
        Value::List(items) => items
            .iter()
            .map(Value::as_string)
            .collect::<Vec<_>>()
            .join(","),
        other => other.as_string(),
    };
    for part in text.split([',', ' ']).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u16 = a
                .trim()
                .parse()
                .map_err(|_| format!("bad port range {part:?}"))?;
            let b: u16 = b
                .trim()
                .parse()
                .map_err(|_| format!("bad port range {part:?}"))?;
            out.extend(a..=b);
        } else {
            out.push(
                part.trim()
                    .parse()
                    .map_err(|_| format!("bad port {part:?}"))?,
            );
        }
    }
    Ok(out)
}

/// A configuration value: what traitlets would have parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    List(Vec<Value>),
}

impl Value {
    fn as_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            Value::None => String::new(),
            Value::List(l) => l.iter().map(Value::as_string).collect::<Vec<_>>().join(","),
        }
    }
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Str(s) => s
                .trim()
                .parse()
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
            _ => None,
        }
    }
    fn as_float(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"),
            Value::Float(f) => *f != 0.0,
            Value::None => false,
            Value::List(l) => !l.is_empty(),
        }
    }
}

/// Splits the command line into (option, value) pairs. Accepts `--opt=value`, `--opt value`
/// (for aliases and `Class.trait` options), and bare flags. Positional arguments are errors.
pub fn parse_argv(args: &[String]) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!(
                "unexpected argument {a:?} (options look like --name=value)"
            ));
        };
        if let Some((k, v)) = body.split_once('=') {
            out.push((k.to_string(), parse_cli_value(v)));
            continue;
        }
        if FLAGS.contains(&body) {
            out.push((body.to_string(), Value::Bool(true)));
            continue;
        }
        let takes_value = body.contains('.') || ALIASES.iter().any(|(n, _)| *n == body);
        if takes_value {
            let Some(v) = args.get(i) else {
                return Err(format!("--{body} needs a value"));
            };
            i += 1;
            out.push((body.to_string(), parse_cli_value(v)));
        } else {
            return Err(format!("unrecognized flag --{body}"));
        }
    }
    Ok(out)
}

/// traitlets evaluates command-line values as Python literals when they parse as such, and
/// keeps them as strings otherwise.
fn parse_cli_value(v: &str) -> Value {
    match parse_literal(v.trim()) {
        Some(val) => val,
        None => Value::Str(v.to_string()),
    }
}

/// Parses the simple `c.Class.trait = literal` assignments of a traitlets Python config file.
/// Lines that are not such assignments are ignored (with no attempt to run Python).
pub fn parse_config_file(path: &Path) -> Result<Vec<(String, Value)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = strip_comment(line).trim();
        let Some(rest) = line.strip_prefix("c.") else {
            continue;
        };
        let Some((lhs, rhs)) = rest.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim();
        if lhs.matches('.').count() != 1
            || !lhs
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            continue;
        }
        if let Some(v) = parse_literal(rhs.trim()) {
            out.push((lhs.to_string(), v));
        }
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// A tiny Python literal parser: ints, floats, True/False/None, quoted strings, lists/tuples.
fn parse_literal(s: &str) -> Option<Value> {
    let s = s.trim();
    match s {
        "True" => return Some(Value::Bool(true)),
        "False" => return Some(Value::Bool(false)),
        "None" => return Some(Value::None),
        _ => {}
    }
    if let Ok(i) = s.replace('_', "").parse::<i64>() {
        return Some(Value::Int(i));
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(Value::Float(f));
    }
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        return Some(Value::Str(s[1..s.len() - 1].to_string()));
    }
    if b.len() >= 2
        && ((b[0] == b'[' && b[b.len() - 1] == b']') || (b[0] == b'(' && b[b.len() - 1] == b')'))
    {
        let inner = &s[1..s.len() - 1];
        let mut items = Vec::new();
        for part in split_top_level(inner) {
            if part.trim().is_empty() {
                continue;
            }
            items.push(parse_literal(part)?);
        }
        return Some(Value::List(items));
    }
    None
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut quote) = (0i32, 0usize, None::<char>);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ']' | ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stock_test_suite_command_lines() {
        let c = Config::from_args(&args(&[
            "--profile-dir=/tmp/p1",
            "--log-level=10",
            "--ping=250",
            "--dictdb",
        ]))
        .unwrap();
        assert_eq!(c.hb_period_ms, 250);
        assert_eq!(c.log_level, tracing::Level::DEBUG);
        assert_eq!(c.db, DbKind::Memory);
        let c = Config::from_args(&args(&[
            "--profile-dir",
            "/tmp/p2",
            "--sqlitedb",
            "--HeartMonitor.period=200",
            "--scheme",
            "lru",
        ]))
        .unwrap();
        assert_eq!(c.hb_period_ms, 200);
        assert_eq!(c.db, DbKind::Sqlite);
        assert_eq!(c.scheme, "lru");
    }

    #[test]
    fn unknown_traits_warn_but_flags_must_exist() {
        let c = Config::from_args(&args(&["--profile-dir=/tmp/p3", "--Foo.bar=3"])).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("Foo.bar")));
        assert!(Config::from_args(&args(&["--bogus"])).is_err());
        assert!(Config::from_args(&args(&["positional"])).is_err());
        assert!(Config::from_args(&args(&["--ping=abc"])).is_err());
    }

    #[test]
    fn config_file_assignments() {
        let dir = std::env::temp_dir().join(format!("oxipp-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ipcontroller_config.py"),
            "c = get_config()  # noqa\nc.HeartMonitor.period = 200\nc.TaskScheduler.hwm = 0 # comment\nc.IPController.ports = [10101, '10102-10103']\nimport os\n",
        )
        .unwrap();
        let c = Config::from_args(&args(&[
            &format!("--profile-dir={}", dir.display()),
            "--hwm=5",
        ]))
        .unwrap();
        assert_eq!(c.hb_period_ms, 200);
        assert_eq!(c.hwm, 5, "command line wins over the file");
        assert_eq!(c.ports, vec![10101, 10102, 10103]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn literals() {
        assert_eq!(parse_literal("'a#b'"), Some(Value::Str("a#b".into())));
        assert_eq!(
            parse_literal("[1, 'x', (2,)]"),
            Some(Value::List(vec![
                Value::Int(1),
                Value::Str("x".into()),
                Value::List(vec![Value::Int(2)])
            ]))
        );
        assert_eq!(parse_literal("1.5"), Some(Value::Float(1.5)));
        assert_eq!(parse_literal("os.getcwd()"), None);
    }
}
